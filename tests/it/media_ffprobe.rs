//! The MP4 validator against ffprobe, on real files made by ffmpeg and then broken: entry
//! counts set to `0xFFFFFFFF` or to random values, table entries changed, chunk offsets
//! moved, box sizes changed, files cut short. Whenever ffprobe cannot open the file or read
//! its streams' packets, the validator must refuse it too.
//!
//! "ffprobe refuses" means: `ffprobe -count_packets` exits non-zero, prints an error from the
//! file reader (the `mov` demuxer, or ffprobe's own "cannot open" line), or reads no packet of
//! some stream. Errors of the decoders (`[h264 @ …]`, `[aac @ …]`) do not count: they are about
//! the media bytes inside `mdat`, which the validator never reads.
//!
//! The validator may refuse a file ffprobe reads, but only with a code in [`STRICTER`], each
//! listed with the reason in docs/testing.md. The number of ffprobe runs is bounded:
//! `DW_FFPROBE_CASES` random mutations (default 100) after the fixed set of `0xFFFFFFFF` counts.

use std::fmt;
use std::io::Cursor;
use std::path::Path;
use std::process::Command;

use douyin_worker::validate::{ValidationError, validate_media};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, RngSeed, TestCaseError, TestRunner};

use crate::media::{H264_AAC, ffmpeg};

/// The validator's codes allowed where ffprobe still reads the file (see docs/testing.md):
/// a top-level box claiming more bytes than the file has (ffprobe reads what is there),
/// child boxes overrunning their parent (ffprobe clamps them), and sample tables that
/// contradict their boxes, each other or `mdat` (ffprobe reads past the box, indexes the
/// smaller count, repairs `stsc`, reads chunks wherever they point).
const STRICTER: &[&str] = &[
    "truncated",
    "bad-box-size",
    "malformed-box",
    "bad-sample-table",
];

/// Containers the box lister descends into.
const CONTAINERS: &[&[u8; 4]] = &[
    b"moov", b"trak", b"mdia", b"minf", b"stbl", b"edts", b"dinf", b"mvex",
];

/// The tables whose entry counts are mutated.
const TABLES: &[&[u8; 4]] = &[
    b"stsd", b"stsz", b"stco", b"co64", b"stts", b"stsc", b"stss", b"ctts", b"elst",
];

/// A box found in a file.
#[derive(Clone, Debug)]
struct Found {
    kind: [u8; 4],
    /// Where it starts.
    at: usize,
    /// Its size, header included.
    size: usize,
    /// The track it is in (1-based in `moov` order), 0 outside tracks.
    track: usize,
}

impl Found {
    fn name(&self) -> String {
        String::from_utf8_lossy(&self.kind).into_owned()
    }

    /// Where the entry count of a table is (after version and flags, and `stsz`'s size).
    fn count_at(&self) -> usize {
        self.at + if &self.kind == b"stsz" { 16 } else { 12 }
    }

    /// Where the entries start and how long one is, for the tables with fixed entries.
    fn entries(&self) -> Option<(usize, usize)> {
        let len = match &self.kind {
            b"stsz" | b"stco" | b"stss" => 4,
            b"co64" | b"stts" | b"ctts" => 8,
            b"stsc" => 12,
            _ => return None,
        };
        Some((self.count_at() + 4, len))
    }
}

/// Every box of the file, depth first, descending into [`CONTAINERS`] (32-bit sizes only,
/// which is what ffmpeg writes for small files); stops at a size that does not fit.
fn boxes(bytes: &[u8]) -> Vec<Found> {
    fn walk(b: &[u8], start: usize, end: usize, track: usize, out: &mut Vec<Found>) {
        let (mut pos, mut tracks) = (start, 0);
        while pos + 8 <= end {
            let size = u32::from_be_bytes(b[pos..pos + 4].try_into().unwrap()) as usize;
            let kind: [u8; 4] = b[pos + 4..pos + 8].try_into().unwrap();
            if size < 8 || pos + size > end {
                break;
            }
            let track = if &kind == b"trak" {
                tracks += 1;
                tracks
            } else {
                track
            };
            out.push(Found {
                kind,
                at: pos,
                size,
                track,
            });
            if CONTAINERS.contains(&&kind) {
                walk(b, pos + 8, pos + size, track, out);
            }
            pos += size;
        }
    }
    let mut out = Vec::new();
    walk(bytes, 0, bytes.len(), 0, &mut out);
    out
}

/// `bytes` with every `stco` turned into a `co64` (sizes of the containers fixed). Only for
/// a file whose `moov` comes after `mdat`, so no chunk moves.
fn with_co64(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos + 8 <= bytes.len() {
        let size = u32::from_be_bytes(bytes[pos..pos + 4].try_into().unwrap()) as usize;
        let mut kind: [u8; 4] = bytes[pos + 4..pos + 8].try_into().unwrap();
        let payload = &bytes[pos + 8..pos + size];
        let payload = if CONTAINERS.contains(&&kind) {
            with_co64(payload)
        } else if &kind == b"stco" {
            kind = *b"co64";
            let mut p = payload[..8].to_vec();
            for offset in payload[8..].chunks_exact(4) {
                let offset = u32::from_be_bytes(offset.try_into().unwrap());
                p.extend(u64::from(offset).to_be_bytes());
            }
            p
        } else {
            payload.to_vec()
        };
        out.extend(u32::try_from(payload.len() + 8).unwrap().to_be_bytes());
        out.extend(kind);
        out.extend(payload);
        pos += size;
    }
    out
}

/// A real file the mutations start from.
struct Source {
    name: &'static str,
    bytes: Vec<u8>,
    /// The packets ffprobe reads from each of its streams.
    packets: Vec<u64>,
}

/// The real files the mutations start from, made by ffmpeg in `dir`; each passes both
/// ffprobe and the validator.
fn sources(dir: &Path) -> Vec<Source> {
    let mut out = Vec::new();
    for (name, bytes) in made(dir) {
        let path = dir.join(format!("{name}.check.mp4"));
        std::fs::write(&path, &bytes).unwrap();
        let packets = ffprobe(&path).unwrap_or_else(|e| panic!("{name}: ffprobe: {e}"));
        validate_media(&mut Cursor::new(&bytes)).unwrap_or_else(|e| panic!("{name}: {e}"));
        out.push(Source {
            name,
            bytes,
            packets,
        });
    }
    out
}

/// The files [`sources`] start from: fast start, `moov` last, `co64` offsets, three tracks.
fn made(dir: &Path) -> Vec<(&'static str, Vec<u8>)> {
    let make = |name: &str, extra: &[&str]| {
        let path = dir.join(name);
        let mut args = vec![
            "-f",
            "lavfi",
            "-i",
            "testsrc=duration=1:size=160x120:rate=25",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:duration=1",
        ];
        args.extend(extra);
        args.extend(H264_AAC);
        args.push(path.to_str().unwrap());
        ffmpeg(&args);
        std::fs::read(&path).unwrap()
    };
    let moov_last = make("moov-last.mp4", &[]);
    let co64 = with_co64(&moov_last);
    vec![
        (
            "fast-start",
            make("fast-start.mp4", &["-movflags", "+faststart"]),
        ),
        ("co64", co64),
        ("moov-last", moov_last),
        (
            "three-tracks",
            make(
                "three-tracks.mp4",
                &[
                    "-f",
                    "lavfi",
                    "-i",
                    "testsrc2=duration=1:size=96x64:rate=15",
                    "-map",
                    "0:v",
                    "-map",
                    "2:v",
                    "-map",
                    "1:a",
                    "-movflags",
                    "+faststart",
                ],
            ),
        ),
    ]
}

/// How many packets ffprobe reads from each stream of the file at `path`, or why it cannot
/// read the file: it exits non-zero, or prints an error of the file reader (ffprobe's own
/// "cannot open" line or the `mov` demuxer's; the decoders' are left out, see the module
/// docs), or a stream has no packet.
fn ffprobe(path: &Path) -> Result<Vec<u64>, String> {
    let out = Command::new("ffprobe")
        // Edit lists trim samples at either end by their timestamps, which are not the sample
        // tables' business: without them, the packets are the samples the tables index.
        .args([
            "-v",
            "error",
            "-ignore_editlist",
            "1",
            "-count_packets",
            "-show_entries",
        ])
        .args(["stream=index,nb_read_packets", "-of", "csv=p=0"])
        .arg(path)
        .output()
        .unwrap_or_else(|e| {
            panic!("ffprobe is needed ({e}): run bash scripts/test.sh, which installs ffmpeg")
        });
    let stderr = String::from_utf8_lossy(&out.stderr);
    let reader_errors: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.starts_with('[') || l.starts_with("[mov,"))
        .collect();
    if !out.status.success() || !reader_errors.is_empty() {
        return Err(format!("{}: {}", out.status, reader_errors.join(" / ")));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let packets: Vec<u64> = stdout
        .lines()
        .map(|l| {
            l.split(',')
                .nth(1)
                .and_then(|n| n.trim().parse().ok())
                .unwrap_or(0)
        })
        .collect();
    if packets.is_empty() || packets.contains(&0) {
        return Err(format!("streams without packets: {packets:?}"));
    }
    Ok(packets)
}

/// Why ffprobe cannot read all of the file `bytes` at `path` whose unbroken original has
/// `whole` packets in each stream: [`ffprobe`] fails, or it reads fewer packets (it stops
/// without an error at a chunk beyond the end of the file, for one). Samples of size 0, which
/// ffprobe skips and which are valid, are not counted as missing.
fn ffprobe_refuses(path: &Path, bytes: &[u8], whole: &[u64]) -> Option<String> {
    let packets = match ffprobe(path) {
        Err(why) => return Some(why),
        Ok(packets) => packets,
    };
    let empty = empty_samples(bytes);
    let short = packets.len() < whole.len()
        || packets
            .iter()
            .zip(whole)
            .enumerate()
            .any(|(stream, (p, w))| *p < w.saturating_sub(empty.get(stream).copied().unwrap_or(0)));
    short.then(|| format!("reads {packets:?} packets of {whole:?}"))
}

/// The samples of size 0 in each track's `stsz` table (ffmpeg's tracks and streams are in
/// the same order).
fn empty_samples(bytes: &[u8]) -> Vec<u64> {
    let mut empty = Vec::new();
    for t in boxes(bytes).iter().filter(|f| &f.kind == b"stsz") {
        empty.resize(t.track.max(empty.len()), 0);
        if get32(bytes, t.at + 12) != 0 {
            continue;
        }
        let room = (t.size - 20) / 4;
        let count = (get32(bytes, t.count_at()) as usize).min(room);
        let entries = bytes[t.at + 20..].chunks_exact(4).take(count);
        empty[t.track - 1] += entries.filter(|e| e == &[0u8; 4]).count() as u64;
    }
    empty
}

/// What ffprobe and the validator said about one file.
#[derive(Default)]
struct Tally {
    both_refuse: usize,
    both_accept: usize,
    /// The validator refused what ffprobe read, by code.
    stricter: std::collections::BTreeMap<&'static str, usize>,
}

impl fmt::Display for Tally {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let total = self.both_refuse + self.both_accept + self.stricter.values().sum::<usize>();
        write!(
            f,
            "{total} files: {} refused by both, {} accepted by both, validator stricter {:?}",
            self.both_refuse, self.both_accept, self.stricter
        )
    }
}

/// Writes `bytes` to `path`, asks ffprobe and the validator, checks they agree (see the
/// module docs) and returns the validator's verdict.
fn compare(
    path: &Path,
    whole: &[u64],
    bytes: &[u8],
    what: &str,
    tally: &mut Tally,
) -> Result<Result<(), ValidationError>, String> {
    std::fs::write(path, bytes).unwrap();
    let ffprobe = ffprobe_refuses(path, bytes, whole);
    let ours = validate_media(&mut Cursor::new(bytes)).map(|_| ());
    match (&ffprobe, &ours) {
        (Some(why), Ok(())) => {
            return Err(format!(
                "{what}: ffprobe refuses ({why}) but the validator accepts"
            ));
        }
        (Some(_), Err(_)) => tally.both_refuse += 1,
        (None, Ok(())) => tally.both_accept += 1,
        (None, Err(e)) => {
            if !STRICTER.contains(&e.code()) {
                return Err(format!(
                    "{what}: ffprobe reads the file but the validator refuses it with {} ({e}), \
                     which is not a documented difference",
                    e.code()
                ));
            }
            *tally.stricter.entry(e.code()).or_default() += 1;
            if std::env::var_os("DW_FFPROBE_VERBOSE").is_some() {
                eprintln!("stricter: {what}: {e}");
            }
        }
    }
    Ok(ours)
}

#[test]
fn real_mp4s_of_every_shape_pass_like_ffprobe() {
    let dir = tempfile::tempdir().unwrap();
    let names: Vec<&str> = sources(dir.path()).iter().map(|s| s.name).collect();
    assert_eq!(names, ["fast-start", "co64", "moov-last", "three-tracks"]);
}

/// The case: each sample table's entry count set to `0xFFFFFFFF`, in every track of
/// every source file. ffprobe cannot open any of them; the validator names track and box.
#[test]
fn entry_counts_of_all_ones_are_refused_naming_track_and_box() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mutated.mp4");
    let mut tally = Tally::default();
    for Source {
        name,
        bytes,
        packets,
    } in sources(dir.path())
    {
        for table in boxes(&bytes) {
            if !TABLES.contains(&&table.kind) || &table.kind == b"elst" {
                continue;
            }
            let mut bad = bytes.clone();
            let at = table.count_at();
            bad[at..at + 4].copy_from_slice(&u32::MAX.to_be_bytes());
            let what = format!(
                "{name}: track {} {} count 0xFFFFFFFF",
                table.track,
                table.name()
            );
            let verdict =
                compare(&path, &packets, &bad, &what, &mut tally).unwrap_or_else(|e| panic!("{e}"));
            let e = verdict.expect_err(&what);
            assert_eq!(e.code(), "bad-sample-table", "{what}: {e}");
            let message = e.to_string();
            for part in [
                format!("track {} ", table.track),
                format!(": {} declares 4294967295 entries", table.name()),
            ] {
                assert!(message.contains(&part), "{what}: {message}");
            }
            let job: douyin_worker::error::JobError = e.into();
            assert_eq!(
                job.class,
                douyin_worker::error::ErrorClass::Permanent,
                "{what}"
            );
        }
    }
    eprintln!("0xFFFFFFFF entry counts: {tally}");
    assert!(tally.both_refuse >= 30, "{tally}");
}

/// One way to break a file.
#[derive(Clone, Debug)]
enum Mutation {
    /// A table's entry count set to a value.
    Count { table: Index, value: Value },
    /// One field of one table entry set to a value.
    Entry {
        table: Index,
        entry: Index,
        field: Index,
        value: Value,
    },
    /// Every chunk offset of a `stco`/`co64` moved by `by` bytes.
    MoveOffsets { table: Index, by: i32 },
    /// A box's size field changed by `by`.
    BoxSize { target: Index, by: i32 },
    /// The file cut to `per_mille` of its length.
    Cut { per_mille: u16 },
}

/// The new value of a 32-bit field.
#[derive(Clone, Copy, Debug)]
enum Value {
    AllOnes,
    Zero,
    Any(u32),
    Add(i16),
    Double,
}

impl Value {
    fn apply(self, old: u32) -> u32 {
        match self {
            Value::AllOnes => u32::MAX,
            Value::Zero => 0,
            Value::Any(v) => v,
            Value::Add(d) => old.wrapping_add_signed(i32::from(d)),
            Value::Double => old.wrapping_mul(2),
        }
    }
}

fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::AllOnes),
        Just(Value::Zero),
        any::<u32>().prop_map(Value::Any),
        (-8i16..8).prop_map(Value::Add),
        any::<i16>().prop_map(Value::Add),
        Just(Value::Double),
    ]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => (any::<Index>(), value()).prop_map(|(table, value)| Mutation::Count { table, value }),
        4 => (any::<Index>(), any::<Index>(), any::<Index>(), value()).prop_map(
            |(table, entry, field, value)| Mutation::Entry { table, entry, field, value }
        ),
        2 => (any::<Index>(), prop_oneof![-4096i32..4096, any::<i32>()])
            .prop_map(|(table, by)| Mutation::MoveOffsets { table, by }),
        2 => (any::<Index>(), prop_oneof![-64i32..64, any::<i32>()])
            .prop_map(|(target, by)| Mutation::BoxSize { target, by }),
        1 => (1u16..1000).prop_map(|per_mille| Mutation::Cut { per_mille }),
    ]
}

fn get32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().unwrap())
}

fn set32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_be_bytes());
}

/// `bytes` broken by `m`, with what was done.
fn mutate(bytes: &[u8], m: &Mutation) -> (Vec<u8>, String) {
    let mut b = bytes.to_vec();
    let all = boxes(bytes);
    let tables: Vec<&Found> = all.iter().filter(|f| TABLES.contains(&&f.kind)).collect();
    let label = |f: &Found| format!("track {} {} at {}", f.track, f.name(), f.at);
    let what = match m {
        Mutation::Count { table, value } => {
            let t = tables[table.index(tables.len())];
            let old = get32(&b, t.count_at());
            set32(&mut b, t.count_at(), value.apply(old));
            format!("{} count {old} -> {}", label(t), get32(&b, t.count_at()))
        }
        Mutation::Entry {
            table,
            entry,
            field,
            value,
        } => {
            let with_entries: Vec<&&Found> = tables
                .iter()
                .filter(|t| t.entries().is_some() && get32(bytes, t.count_at()) > 0)
                .collect();
            let t = with_entries[table.index(with_entries.len())];
            let (start, len) = t.entries().unwrap();
            let count = (get32(bytes, t.count_at()) as usize).min((t.at + t.size - start) / len);
            let at = start + entry.index(count) * len + field.index(len / 4) * 4;
            let old = get32(&b, at);
            set32(&mut b, at, value.apply(old));
            format!("{} field at {at}: {old} -> {}", label(t), get32(&b, at))
        }
        Mutation::MoveOffsets { table, by } => {
            let offsets: Vec<&&Found> = tables
                .iter()
                .filter(|t| matches!(&t.kind, b"stco" | b"co64"))
                .collect();
            let t = offsets[table.index(offsets.len())];
            let (start, len) = t.entries().unwrap();
            for i in 0..get32(bytes, t.count_at()) as usize {
                let at = start + i * len + len - 4;
                set32(&mut b, at, get32(bytes, at).wrapping_add_signed(*by));
            }
            format!("{} offsets moved by {by}", label(t))
        }
        Mutation::BoxSize { target, by } => {
            let t = &all[target.index(all.len())];
            set32(&mut b, t.at, (t.size as u32).wrapping_add_signed(*by));
            format!("{} size {} -> {}", label(t), t.size, get32(&b, t.at))
        }
        Mutation::Cut { per_mille } => {
            b.truncate(bytes.len() * usize::from(*per_mille) / 1000);
            format!("cut to {} of {} bytes", b.len(), bytes.len())
        }
    };
    (b, what)
}

/// Random mutations of the real files: `DW_FFPROBE_CASES` of them (default 100), from a fixed
/// seed (`PROPTEST_RNG_SEED` picks another).
#[test]
fn mutated_real_mp4s_that_ffprobe_refuses_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let sources = sources(dir.path());
    let path = dir.path().join("mutated.mp4");
    let cases = std::env::var("DW_FFPROBE_CASES")
        .ok()
        .map(|v| {
            v.parse()
                .expect("DW_FFPROBE_CASES: a number of cases, e.g. 1000")
        })
        .unwrap_or(100);
    let mut config = Config::with_cases(cases);
    if std::env::var_os("PROPTEST_RNG_SEED").is_none() {
        config.rng_seed = RngSeed::Fixed(0x6d70_3466);
    }
    config.failure_persistence = None;
    let tally = std::cell::RefCell::new(Tally::default());
    let strategy = (0..sources.len(), mutation());
    let result = TestRunner::new(config).run(&strategy, |(source, m)| {
        let source = &sources[source];
        let (bad, what) = mutate(&source.bytes, &m);
        let what = format!("{}: {what}", source.name);
        compare(&path, &source.packets, &bad, &what, &mut tally.borrow_mut())
            .map_err(TestCaseError::fail)?
            .ok();
        Ok(())
    });
    let tally = tally.into_inner();
    eprintln!("mutated MP4s against ffprobe ({cases} cases, shrinking included): {tally}");
    if let Err(e) = result {
        panic!("{e}");
    }
}
