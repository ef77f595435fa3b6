//! The sample tables of each track (`moov/trak/mdia/minf/stbl`), checked against each other
//! and against the file: what a player needs to find every sample.
//!
//! For each track, in order:
//! - the boxes every track needs are there: `mdia` with `hdlr` and `minf`, `minf` with
//!   `stbl`, `stbl` with `stsd`, `stts`, `stsc`, `stsz` (or `stz2`) and `stco` (or `co64`),
//!   empty in a fragmented file (a track without them is one FFmpeg reads no packet of);
//! - every entry count fits its box (`stsd`, `stsz`/`stz2`, `stco`/`co64`, `stts`, `stsc`,
//!   `ctts`, `stss`): a count of `0xFFFFFFFF` in a 60-byte box is refused, where FFmpeg runs
//!   out of memory or reads the boxes after it as entries;
//! - the tables a track with chunks needs are there (`stts`, `stsc`, `stsz`), and a track with
//!   samples has chunks (FFmpeg's "missing mandatory atoms");
//! - `stts`, `stsz` and `stsc` over `stco` count the same number of samples, and each `stsc`
//!   entry names an existing chunk (first chunks from 1, increasing) and sample description;
//! - every chunk's bytes (its offset, plus the sizes of its samples) lie inside one `mdat`,
//!   and the samples of all tracks add up to no more than the `mdat` payloads hold.
//!
//! All of it works on `moov` in memory and on the `mdat` extents the box walk saw: `mdat`
//! itself is never read. Fragmented files keep their samples in `moof` boxes and have empty
//! tables here, which pass.

use std::ops::Range;

use super::ValidationError;
use super::mp4::{be32, be64, child, children};

/// How many `mdat` extents are remembered; past that, chunks are checked against the file's
/// end only (a real file has one `mdat`, a fragmented one a few thousand at most).
const MDAT_LIMIT: usize = 1 << 16;

/// The payloads of the top-level `mdat` boxes, in file order.
#[derive(Debug, Default)]
pub(super) struct Mdats {
    ranges: Vec<Range<u64>>,
    /// More `mdat` boxes than [`MDAT_LIMIT`]: `ranges` is not all of them.
    overflow: bool,
}

impl Mdats {
    /// Records an `mdat` payload (the box walk calls this in file order).
    pub fn push(&mut self, payload: Range<u64>) {
        if self.ranges.len() < MDAT_LIMIT {
            self.ranges.push(payload);
        } else {
            self.overflow = true;
        }
    }

    /// The `mdat` payload holding all of `bytes`, when there is one.
    fn holding(&self, bytes: &Range<u64>) -> Option<&Range<u64>> {
        let i = self.ranges.partition_point(|r| r.start <= bytes.start);
        let r = self.ranges.get(i.checked_sub(1)?)?;
        (bytes.end <= r.end).then_some(r)
    }

    /// The bytes the `mdat` payloads hold.
    fn total(&self) -> u64 {
        self.ranges.iter().map(|r| r.end - r.start).sum()
    }

    /// `bytes a..b`, `bytes a..b and c..d`, or `N mdat boxes` for messages.
    fn describe(&self) -> String {
        match self.ranges.as_slice() {
            [] => "no mdat".into(),
            [one] => format!("mdat payload at bytes {}..{}", one.start, one.end),
            many => format!("{} mdat boxes", many.len()),
        }
    }
}

/// Checks the sample tables of every track in the `moov` payload `moov` of a file of
/// `file_len` bytes whose `mdat` payloads are `mdats`.
pub(super) fn check(moov: &[u8], mdats: &Mdats, file_len: u64) -> Result<(), ValidationError> {
    let mut number = 0;
    let mut sample_bytes = 0u64;
    for c in children(moov, "moov") {
        let (kind, trak) = c?;
        if &kind != b"trak" {
            continue;
        }
        number += 1;
        sample_bytes = sample_bytes.saturating_add(check_trak(number, trak, mdats, file_len)?);
    }
    if !mdats.overflow && sample_bytes > mdats.total() {
        return Err(ValidationError::SampleTable {
            track: "all tracks".into(),
            box_type: "stsz",
            reason: format!(
                "sizes add up to {sample_bytes} bytes but the mdat payloads hold {}",
                mdats.total()
            ),
        });
    }
    Ok(())
}

/// Which track, for messages: `track 2 (soun)`.
struct TrackName(String);

impl TrackName {
    /// A box every track needs (ISO/IEC 14496-12: `mdia` with `hdlr` and `minf`, `minf`
    /// with `stbl`, `stbl` with `stsd` and the sample tables) is not there.
    fn missing(&self, box_type: &'static str) -> ValidationError {
        self.err(box_type, "box missing: the track cannot be read")
    }

    fn err(&self, box_type: &'static str, reason: impl Into<String>) -> ValidationError {
        ValidationError::SampleTable {
            track: self.0.clone(),
            box_type,
            reason: reason.into(),
        }
    }
}

/// Checks one track; returns the bytes its samples take.
fn check_trak(
    number: usize,
    trak: &[u8],
    mdats: &Mdats,
    file_len: u64,
) -> Result<u64, ValidationError> {
    let unnamed = TrackName(format!("track {number}"));
    let mdia = child(trak, "trak", b"mdia")?.ok_or_else(|| unnamed.missing("mdia"))?;
    let hdlr = child(mdia, "mdia", b"hdlr")?.filter(|h| h.len() >= 12);
    let hdlr = hdlr.ok_or_else(|| unnamed.missing("hdlr"))?;
    let name = TrackName(format!(
        "track {number} ({})",
        super::printable(&hdlr[8..12])
    ));
    let minf = child(mdia, "mdia", b"minf")?.ok_or_else(|| name.missing("minf"))?;
    let stbl = child(minf, "minf", b"stbl")?.ok_or_else(|| name.missing("stbl"))?;
    if child(stbl, "stbl", b"stsd")?.is_none() {
        return Err(name.missing("stsd"));
    }
    let tables = Tables::read(stbl, &name)?;
    tables.check_counts(&name)?;
    tables.check_chunks(&name, mdats, file_len)
}

/// Sample sizes: one for all (`stsz` with a size), or one per sample.
enum Sizes<'a> {
    Constant(u64),
    /// `stsz` entries, 4 bytes each.
    Table(&'a [u8]),
    /// `stz2` entries of 4, 8 or 16 bits.
    Compact {
        bits: u8,
        entries: &'a [u8],
    },
}

impl Sizes<'_> {
    /// The size of sample `i` (0-based; `i` is below the sample count).
    fn get(&self, i: u64) -> u64 {
        let i = i as usize;
        match *self {
            Sizes::Constant(size) => size,
            Sizes::Table(e) => u64::from(be32(e, i * 4)),
            Sizes::Compact { bits: 4, entries } => {
                let b = entries[i / 2];
                u64::from(if i.is_multiple_of(2) {
                    b >> 4
                } else {
                    b & 0x0f
                })
            }
            Sizes::Compact { bits: 8, entries } => u64::from(entries[i]),
            Sizes::Compact { entries, .. } => u64::from(super::mp4::be16(entries, i * 2)),
        }
    }
}

/// The tables of one track, their counts checked against their boxes.
struct Tables<'a> {
    /// Sample descriptions in `stsd` (0 when there is no `stsd`).
    descriptions: u32,
    /// Samples by `stsz`/`stz2`.
    samples: u64,
    sizes: Sizes<'a>,
    /// Whether `stsz`/`stz2` is there and says anything (a size or a count).
    has_sizes: bool,
    /// Chunk offsets: the entries of `stco` (4 bytes each) or `co64` (8 bytes each).
    offsets: &'a [u8],
    offset_len: usize,
    /// `stts` entries: sample count, sample delta.
    stts: &'a [u8],
    /// `stsc` entries: first chunk, samples per chunk, sample description index.
    stsc: &'a [u8],
}

impl<'a> Tables<'a> {
    fn read(stbl: &'a [u8], name: &TrackName) -> Result<Self, ValidationError> {
        let mut t = Tables {
            descriptions: 0,
            samples: 0,
            sizes: Sizes::Constant(0),
            has_sizes: false,
            offsets: &[],
            offset_len: 4,
            stts: &[],
            stsc: &[],
        };
        let (mut seen_sizes, mut seen_offsets) = (false, false);
        let (mut seen_stts, mut seen_stsc) = (false, false);
        for c in children(stbl, "stbl") {
            let (kind, p) = c?;
            match &kind {
                b"stsd" => t.descriptions = sample_descriptions(p, name)?,
                b"stsz" if !seen_sizes => {
                    seen_sizes = true;
                    need(name, "stsz", p, 12)?;
                    let (size, count) = (be32(p, 4), be32(p, 8));
                    t.samples = u64::from(count);
                    t.has_sizes = size != 0 || count != 0;
                    t.sizes = if size != 0 {
                        Sizes::Constant(u64::from(size))
                    } else {
                        Sizes::Table(entries(name, "stsz", p, 12, 4)?)
                    };
                }
                b"stz2" if !seen_sizes => {
                    seen_sizes = true;
                    need(name, "stz2", p, 12)?;
                    let bits = p[7];
                    if !matches!(bits, 4 | 8 | 16) {
                        return Err(name.err("stz2", format!("field size {bits}, not 4, 8 or 16")));
                    }
                    let count = u64::from(be32(p, 8));
                    let room = (p.len() as u64 - 12) * 8 / u64::from(bits);
                    if count > room {
                        return Err(name.err("stz2", overflow_message(count, room)));
                    }
                    t.samples = count;
                    t.has_sizes = count != 0;
                    t.sizes = Sizes::Compact {
                        bits,
                        entries: &p[12..],
                    };
                }
                b"stco" | b"co64" if !seen_offsets => {
                    seen_offsets = true;
                    let (box_type, len) = if &kind == b"stco" {
                        ("stco", 4)
                    } else {
                        ("co64", 8)
                    };
                    t.offsets = entries(name, box_type, p, 8, len)?;
                    t.offset_len = len;
                }
                b"stts" => {
                    seen_stts = true;
                    t.stts = entries(name, "stts", p, 8, 8)?;
                }
                b"stsc" => {
                    seen_stsc = true;
                    t.stsc = entries(name, "stsc", p, 8, 12)?;
                }
                // Only their counts are checked: FFmpeg reads past the box otherwise.
                b"ctts" => {
                    entries(name, "ctts", p, 8, 8)?;
                }
                b"stss" => {
                    entries(name, "stss", p, 8, 4)?;
                }
                _ => {}
            }
        }
        for (seen, box_type) in [
            (seen_stts, "stts"),
            (seen_stsc, "stsc"),
            (seen_sizes, "stsz"),
            (seen_offsets, "stco"),
        ] {
            if !seen {
                return Err(name.missing(box_type));
            }
        }
        Ok(t)
    }

    fn chunks(&self) -> u64 {
        (self.offsets.len() / self.offset_len) as u64
    }

    fn offset(&self, chunk: usize) -> u64 {
        match self.offset_len {
            8 => be64(self.offsets, chunk * 8),
            _ => u64::from(be32(self.offsets, chunk * 4)),
        }
    }

    /// The tables there, and one sample count across `stsz`, `stts` and `stsc` over the chunks.
    fn check_counts(&self, name: &TrackName) -> Result<(), ValidationError> {
        let chunks = self.chunks();
        let offsets = if self.offset_len == 8 { "co64" } else { "stco" };
        if chunks == 0 {
            if self.samples > 0 {
                let why = format!(
                    "has no chunk offsets but stsz counts {} samples",
                    self.samples
                );
                return Err(name.err(offsets, why));
            }
            return Ok(());
        }
        let missing = |table: &'static str| {
            name.err(
                table,
                format!("missing or empty, but {offsets} has {chunks} chunks"),
            )
        };
        if self.stts.is_empty() {
            return Err(missing("stts"));
        }
        if self.stsc.is_empty() {
            return Err(missing("stsc"));
        }
        if !self.has_sizes {
            return Err(missing("stsz"));
        }
        let timed: u64 = self
            .stts
            .chunks_exact(8)
            .map(|e| u64::from(be32(e, 0)))
            .sum();
        if timed != self.samples {
            let why = format!("counts {timed} samples but stsz counts {}", self.samples);
            return Err(name.err("stts", why));
        }
        let mut in_chunks = 0u64;
        for (i, run) in self.runs().enumerate() {
            let Run {
                first,
                end,
                per_chunk,
                description,
            } = run;
            let entry_n = |n: usize, why: String| name.err("stsc", format!("entry {n}: {why}"));
            let entry = |why: String| entry_n(i + 1, why);
            if first == 0 || first > chunks {
                let why = format!("first chunk {first}, but {offsets} has chunks 1 to {chunks}");
                return Err(entry(why));
            }
            if end <= first {
                // Only the next entry's first chunk can be too small.
                let why = format!("first chunk {end} does not come after {first}");
                return Err(entry_n(i + 2, why));
            }
            if per_chunk == 0 {
                return Err(entry("0 samples per chunk".into()));
            }
            if description == 0 || description > self.descriptions {
                let why = format!(
                    "sample description {description}, but stsd has {}",
                    self.descriptions
                );
                return Err(entry(why));
            }
            in_chunks = in_chunks.saturating_add((end - first).saturating_mul(per_chunk));
        }
        if in_chunks != self.samples {
            let why = format!(
                "puts {in_chunks} samples in {chunks} chunks but stsz counts {}",
                self.samples
            );
            return Err(name.err("stsc", why));
        }
        Ok(())
    }

    /// The `stsc` runs: chunks `first..end` (1-based) with `per_chunk` samples each.
    fn runs(&self) -> impl Iterator<Item = Run> + '_ {
        let n = self.stsc.len() / 12;
        (0..n).map(move |i| {
            let e = &self.stsc[i * 12..];
            let first = u64::from(be32(e, 0));
            let end = if i + 1 < n {
                u64::from(be32(e, 12))
            } else {
                self.chunks() + 1
            };
            Run {
                first,
                end,
                per_chunk: u64::from(be32(e, 4)),
                description: be32(e, 8),
            }
        })
    }

    /// Every chunk inside one `mdat` (and the file); returns the bytes the samples take.
    /// Runs after [`Tables::check_counts`], so the counts agree.
    fn check_chunks(
        &self,
        name: &TrackName,
        mdats: &Mdats,
        file_len: u64,
    ) -> Result<u64, ValidationError> {
        let box_type = if self.offset_len == 8 { "co64" } else { "stco" };
        let mut sample = 0u64;
        let mut total = 0u64;
        for run in self.runs() {
            for chunk in run.first..run.end {
                let start = self.offset(chunk as usize - 1);
                let mut len = 0u64;
                match self.sizes {
                    Sizes::Constant(size) => len = size.saturating_mul(run.per_chunk),
                    _ => {
                        for s in sample..sample + run.per_chunk {
                            len = len.saturating_add(self.sizes.get(s));
                        }
                    }
                }
                sample += run.per_chunk;
                total = total.saturating_add(len);
                let bytes = start..start.saturating_add(len);
                let what = || format!("chunk {chunk} at byte {start} ({len} bytes of samples)");
                if bytes.end > file_len {
                    let why = format!(
                        "{} runs past the end of the file ({file_len} bytes)",
                        what()
                    );
                    return Err(name.err(box_type, why));
                }
                if len > 0 && !mdats.overflow && mdats.holding(&bytes).is_none() {
                    let why = format!("{} is outside the {}", what(), mdats.describe());
                    return Err(name.err(box_type, why));
                }
            }
        }
        Ok(total)
    }
}

/// One `stsc` entry with its end.
struct Run {
    first: u64,
    end: u64,
    per_chunk: u64,
    description: u32,
}

/// The number of sample descriptions in `stsd`: at least one, each a box inside `stsd`.
fn sample_descriptions(p: &[u8], name: &TrackName) -> Result<u32, ValidationError> {
    need(name, "stsd", p, 8)?;
    let count = be32(p, 4);
    if count == 0 {
        return Err(name.err("stsd", "no sample description (0 entries)"));
    }
    let mut found = 0u32;
    for entry in children(&p[8..], "stsd").take(count as usize) {
        if entry.is_err() {
            let why = format!("sample description {} does not fit the box", found + 1);
            return Err(name.err("stsd", why));
        }
        found += 1;
    }
    if found < count {
        return Err(name.err("stsd", overflow_message(u64::from(count), u64::from(found))));
    }
    Ok(count)
}

/// Checks that the full-box payload `p` has its `header` bytes (ending with the entry
/// count) and room for that many `len`-byte entries; returns the entries.
fn entries<'a>(
    name: &TrackName,
    box_type: &'static str,
    p: &'a [u8],
    header: usize,
    len: usize,
) -> Result<&'a [u8], ValidationError> {
    need(name, box_type, p, header)?;
    let count = u64::from(be32(p, header - 4));
    let room = ((p.len() - header) / len) as u64;
    if count > room {
        return Err(name.err(box_type, overflow_message(count, room)));
    }
    Ok(&p[header..header + count as usize * len])
}

fn need(
    name: &TrackName,
    box_type: &'static str,
    p: &[u8],
    n: usize,
) -> Result<(), ValidationError> {
    if p.len() < n {
        return Err(name.err(box_type, format!("{} bytes, needs {n}", p.len())));
    }
    Ok(())
}

fn overflow_message(count: u64, room: u64) -> String {
    format!("declares {count} entries but the box has room for {room}")
}
