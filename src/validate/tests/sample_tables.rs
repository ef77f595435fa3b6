//! The sample-table checks, on files whose tables index real samples in `mdat`.

use super::*;

/// The tables of one track.
#[derive(Clone)]
struct Tables {
    /// `stts` entries: sample count, delta.
    stts: Vec<(u32, u32)>,
    /// `stsc` entries: first chunk, samples per chunk, description index.
    stsc: Vec<(u32, u32, u32)>,
    /// One size per sample, or `(size, count)` for `stsz` with one size for all.
    sizes: Result<Vec<u32>, (u32, u32)>,
    /// Chunk offsets, relative to the start of the `mdat` payload.
    chunks: Vec<u64>,
    co64: bool,
}

/// Video: samples of 100, 200 and 300 bytes, the first two in chunk 1 (at 0), the third in
/// chunk 2 (at 300).
fn video_tables() -> Tables {
    Tables {
        stts: vec![(3, 512)],
        stsc: vec![(1, 2, 1), (2, 1, 1)],
        sizes: Ok(vec![100, 200, 300]),
        chunks: vec![0, 300],
        co64: false,
    }
}

/// Audio: 4 samples of 10 bytes in one chunk at 600, with 64-bit offsets.
fn audio_tables() -> Tables {
    Tables {
        stts: vec![(4, 1024)],
        stsc: vec![(1, 4, 1)],
        sizes: Err((10, 4)),
        chunks: vec![600],
        co64: true,
    }
}

/// The bytes all samples take.
const MDAT_PAYLOAD: usize = 640;

/// An `stbl` for `t`, with chunk offsets from `base` (where the `mdat` payload starts).
fn stbl(codec: &[u8; 4], t: &Tables, base: u64) -> Vec<u8> {
    let count = |n: usize| be(n as u32).to_vec();
    let stts: Vec<u8> = t
        .stts
        .iter()
        .flat_map(|(n, d)| [be(*n), be(*d)])
        .flatten()
        .collect();
    let stsc: Vec<u8> = t
        .stsc
        .iter()
        .flat_map(|(f, n, d)| [be(*f), be(*n), be(*d)])
        .flatten()
        .collect();
    let stsz = match &t.sizes {
        Ok(sizes) => [
            be(0).to_vec(),
            count(sizes.len()),
            sizes.iter().flat_map(|s| be(*s)).collect(),
        ]
        .concat(),
        Err((size, n)) => [be(*size), be(*n)].concat(),
    };
    let offsets: Vec<u8> = if t.co64 {
        t.chunks
            .iter()
            .flat_map(|c| (base + c).to_be_bytes())
            .collect()
    } else {
        t.chunks
            .iter()
            .flat_map(|c| be((base + c) as u32))
            .collect()
    };
    let offsets_box = if t.co64 { b"co64" } else { b"stco" };
    boxed(
        b"stbl",
        &[
            stsd(codec, 0, 0),
            boxed(b"stts", &full(0, &[count(t.stts.len()), stts].concat())),
            boxed(b"stsc", &full(0, &[count(t.stsc.len()), stsc].concat())),
            boxed(b"stsz", &full(0, &stsz)),
            boxed(
                offsets_box,
                &full(0, &[count(t.chunks.len()), offsets].concat()),
            ),
        ]
        .concat(),
    )
}

fn indexed_trak(handler: &[u8; 4], codec: &[u8; 4], t: &Tables, base: u64) -> Vec<u8> {
    let minf = boxed(b"minf", &stbl(codec, t, base));
    let mdia = boxed(b"mdia", &[hdlr(handler), minf].concat());
    boxed(b"trak", &[tkhd(0, 320, 240, false), mdia].concat())
}

fn indexed_moov(video: &Tables, audio: &Tables, base: u64) -> Vec<u8> {
    moov(
        mvhd(1000, 2000),
        &[
            indexed_trak(b"vide", b"avc1", video, base),
            indexed_trak(b"soun", b"mp4a", audio, base),
        ],
    )
}

/// A file whose tables index the samples in its `mdat`: `moov` first, or last.
fn indexed(video: &Tables, audio: &Tables, fast_start: bool) -> Vec<u8> {
    let head = ftyp(b"isom");
    let mdat = mdat(MDAT_PAYLOAD);
    if fast_start {
        // The offsets do not change the size of moov.
        let moov_len = indexed_moov(video, audio, 0).len();
        let base = (head.len() + moov_len + 8) as u64;
        [head, indexed_moov(video, audio, base), mdat].concat()
    } else {
        let base = (head.len() + 8) as u64;
        [head, mdat, indexed_moov(video, audio, base)].concat()
    }
}

fn table_err(video: &Tables, audio: &Tables) -> String {
    let e = err(&indexed(video, audio, true));
    assert_eq!(e.code(), "bad-sample-table", "{e}");
    assert_eq!(e.class(), ErrorClass::Permanent);
    e.to_string()
}

#[test]
fn tables_that_index_mdat_pass_with_moov_first_or_last() {
    for fast_start in [true, false] {
        let info = check(&indexed(&video_tables(), &audio_tables(), fast_start)).unwrap();
        assert_eq!(info.fast_start, fast_start);
        assert_eq!(info.codecs, ["avc1", "mp4a"]);
    }
}

#[test]
fn entry_counts_larger_than_their_box() {
    let mut file = indexed(&video_tables(), &audio_tables(), true);
    let at = find(&file, b"stsz").unwrap() + 12;
    file[at..at + 4].copy_from_slice(&be(u32::MAX));
    let e = err(&file);
    assert_eq!(
        e.to_string(),
        "track 1 (vide): stsz declares 4294967295 entries but the box has room for 3"
    );
    let job: JobError = e.into();
    assert_eq!(
        (job.class, job.code),
        (ErrorClass::Permanent, "bad-sample-table")
    );

    for kind in [b"stts", b"stsc", b"stco", b"co64", b"stsd"] {
        let mut file = indexed(&video_tables(), &audio_tables(), true);
        let at = find(&file, kind).unwrap() + 8;
        file[at..at + 4].copy_from_slice(&be(70_000));
        let e = err(&file).to_string();
        let kind = String::from_utf8_lossy(kind);
        assert!(e.contains(&format!("{kind} declares 70000 entries")), "{e}");
    }
}

#[test]
fn sample_counts_must_agree() {
    let mut v = video_tables();
    v.stts = vec![(2, 512), (2, 256)];
    assert_eq!(
        table_err(&v, &audio_tables()),
        "track 1 (vide): stts counts 4 samples but stsz counts 3"
    );
    let mut v = video_tables();
    v.stsc = vec![(1, 2, 1)];
    assert_eq!(
        table_err(&v, &audio_tables()),
        "track 1 (vide): stsc puts 4 samples in 2 chunks but stsz counts 3"
    );
    let mut a = audio_tables();
    a.sizes = Err((10, 5));
    assert_eq!(
        table_err(&video_tables(), &a),
        "track 2 (soun): stts counts 4 samples but stsz counts 5"
    );
}

#[test]
fn stsc_entries_must_name_real_chunks_and_descriptions() {
    let cases = [
        (
            vec![(1, 2, 1), (3, 1, 1)],
            "entry 2: first chunk 3, but stco has chunks 1 to 2",
        ),
        (
            vec![(0, 2, 1), (2, 1, 1)],
            "entry 1: first chunk 0, but stco has chunks 1 to 2",
        ),
        (
            vec![(2, 2, 1), (1, 1, 1)],
            "entry 2: first chunk 1 does not come after 2",
        ),
        (vec![(1, 0, 1), (2, 3, 1)], "entry 1: 0 samples per chunk"),
        (
            vec![(1, 2, 2), (2, 1, 1)],
            "entry 1: sample description 2, but stsd has 1",
        ),
    ];
    for (stsc, want) in cases {
        let mut v = video_tables();
        v.stsc = stsc;
        assert_eq!(
            table_err(&v, &audio_tables()),
            format!("track 1 (vide): stsc {want}")
        );
    }
}

#[test]
fn chunks_must_lie_inside_mdat() {
    let head_len = ftyp(b"isom").len();
    let moov_len = indexed_moov(&video_tables(), &audio_tables(), 0).len();
    let (start, end) = (
        head_len + moov_len + 8,
        head_len + moov_len + 8 + MDAT_PAYLOAD,
    );

    // Chunk 2 moved 100 bytes on: its 300 bytes end past mdat, which ends the file.
    let mut v = video_tables();
    v.chunks[1] = 400;
    assert_eq!(
        table_err(&v, &audio_tables()),
        format!(
            "track 1 (vide): stco chunk 2 at byte {} (300 bytes of samples) runs past the end \
             of the file ({end} bytes)",
            start + 400
        )
    );
    // Chunk 1 pointing back into moov.
    let mut v = video_tables();
    v.chunks[0] = 0;
    let mut file = indexed(&v, &audio_tables(), true);
    let at = find(&file, b"stco").unwrap() + 12;
    file[at..at + 4].copy_from_slice(&be(100));
    assert_eq!(
        err(&file).to_string(),
        format!(
            "track 1 (vide): stco chunk 1 at byte 100 (300 bytes of samples) is outside the \
             mdat payload at bytes {start}..{end}"
        )
    );
    // The audio chunk on top of the video's: each inside mdat, more bytes than mdat holds.
    let mut a = audio_tables();
    a.sizes = Err((90, 4));
    a.chunks = vec![280];
    assert_eq!(
        table_err(&video_tables(), &a),
        "all tracks: stsz sizes add up to 960 bytes but the mdat payloads hold 640"
    );
}

#[test]
fn a_track_with_chunks_needs_every_table() {
    let mut v = video_tables();
    v.stts.clear();
    assert_eq!(
        table_err(&v, &audio_tables()),
        "track 1 (vide): stts missing or empty, but stco has 2 chunks"
    );
    let mut v = video_tables();
    v.chunks.clear();
    assert_eq!(
        table_err(&v, &audio_tables()),
        "track 1 (vide): stco has no chunk offsets but stsz counts 3 samples"
    );
    // No stsz box at all.
    let mut file = indexed(&video_tables(), &audio_tables(), false);
    let at = find(&file, b"stsz").unwrap();
    file[at..at + 4].copy_from_slice(b"free");
    assert_eq!(
        err(&file).to_string(),
        "track 1 (vide): stsz box missing: the track cannot be read"
    );
}

#[test]
fn compact_sample_sizes() {
    // stz2 with 4-bit sizes 1, 2, 3 (and a pad nibble): 6 bytes in one chunk.
    let stz2 = boxed(
        b"stz2",
        &full(0, &[&[0, 0, 0, 4][..], &be(3), &[0x12, 0x30]].concat()),
    );
    let mut file = indexed(&video_tables(), &audio_tables(), false);
    let at = find(&file, b"stsz").unwrap() - 4;
    let old = u32::from_be_bytes(file[at..at + 4].try_into().unwrap()) as usize;
    let delta = old as i64 - stz2.len() as i64;
    file.splice(at..at + old, stz2.clone());
    // Fix the sizes of moov, trak, mdia, minf and stbl around it.
    for kind in [b"moov", b"trak", b"mdia", b"minf", b"stbl"] {
        let at = find(&file, kind).unwrap() - 4;
        let size = u32::from_be_bytes(file[at..at + 4].try_into().unwrap());
        file[at..at + 4].copy_from_slice(&be((size as i64 - delta) as u32));
    }
    // 6 bytes instead of 600: the chunks still lie in mdat.
    check(&file).unwrap();

    let at = find(&file, b"stz2").unwrap() + 11;
    file[at] = 5;
    assert_eq!(
        err(&file).to_string(),
        "track 1 (vide): stz2 field size 5, not 4, 8 or 16"
    );
    file[at] = 4;
    file[at + 4] = 9;
    assert_eq!(
        err(&file).to_string(),
        "track 1 (vide): stz2 declares 9 entries but the box has room for 4"
    );
}

#[test]
fn tables_pointing_into_a_50_mb_mdat_are_checked_unread() {
    const MDAT: u64 = 50 << 20;
    let mdat_header = [&be(1)[..], b"mdat", &(MDAT + 16).to_be_bytes()].concat();
    let head = ftyp(b"isom");
    let base = (head.len() + mdat_header.len()) as u64;
    let mut v = video_tables();
    v.chunks = vec![0, MDAT - 300];
    let tail = indexed_moov(&v, &audio_tables(), base);
    let len = base + MDAT + tail.len() as u64;
    let mut file = Virtual::new([head, mdat_header].concat(), tail, len);
    validate_mp4(&mut file).unwrap();
    assert!(file.read < 4096, "read {} bytes", file.read);
}
