//! MP4 validation and the pipeline stage, on files built box by box.

use std::io::{self, Cursor, Read, Seek, SeekFrom};

use super::*;
use crate::error::ErrorClass;

const CAPTCHA: &str = include_str!("../../tests/fixtures/douyin/captcha-middle-page.html");
const CDN_403: &str = include_str!("../../tests/fixtures/douyin/cdn_403_forbidden_2024-11.json");

// ---- A small box writer ----

fn boxed(kind: &[u8; 4], payload: &[u8]) -> Vec<u8> {
    let size = u32::try_from(payload.len() + 8).unwrap();
    [&size.to_be_bytes()[..], kind, payload].concat()
}

/// A box with a 64-bit size (size field 1).
fn boxed64(kind: &[u8; 4], payload: &[u8]) -> Vec<u8> {
    let size = payload.len() as u64 + 16;
    [&1u32.to_be_bytes()[..], kind, &size.to_be_bytes(), payload].concat()
}

/// Version and flags, then `rest`.
fn full(version: u8, rest: &[u8]) -> Vec<u8> {
    [&[version, 0, 0, 0][..], rest].concat()
}

fn be(v: u32) -> [u8; 4] {
    v.to_be_bytes()
}

fn ftyp(major: &[u8; 4]) -> Vec<u8> {
    let p = [&major[..], &be(0x200), b"isom", b"iso2", b"avc1", b"mp41"].concat();
    boxed(b"ftyp", &p)
}

/// A 3x3 matrix: identity, or a 90° rotation.
fn matrix(rotated: bool) -> Vec<u8> {
    let (one, minus_one) = (0x0001_0000u32, 0xffff_0000u32);
    let (a, b, c, d) = if rotated {
        (0, one, minus_one, 0)
    } else {
        (one, 0, 0, one)
    };
    [a, b, 0, c, d, 0, 0, 0, 0x4000_0000]
        .iter()
        .flat_map(|v| be(*v))
        .collect()
}

fn mvhd(timescale: u32, duration: u32) -> Vec<u8> {
    let p = [
        &[0u8; 8][..],
        &be(timescale),
        &be(duration),
        &be(0x0001_0000),
        &[1, 0],
        &[0; 10],
        &matrix(false),
        &[0; 24],
        &be(3),
    ]
    .concat();
    boxed(b"mvhd", &full(0, &p))
}

fn mvhd_v1(timescale: u32, duration: u64) -> Vec<u8> {
    let p = [
        &[0u8; 16][..],
        &be(timescale),
        &duration.to_be_bytes(),
        &be(0x0001_0000),
        &[1, 0],
        &[0; 10],
        &matrix(false),
        &[0; 24],
        &be(3),
    ]
    .concat();
    boxed(b"mvhd", &full(1, &p))
}

fn tkhd(version: u8, width: u32, height: u32, rotated: bool) -> Vec<u8> {
    let times: &[u8] = if version == 1 {
        &[0; 36 - 4]
    } else {
        &[0; 24 - 4]
    };
    let p = [
        times,
        &[0; 8],
        &[0; 8],
        &matrix(rotated),
        &be(width << 16),
        &be(height << 16),
    ]
    .concat();
    boxed(b"tkhd", &full(version, &p))
}

fn hdlr(handler: &[u8; 4]) -> Vec<u8> {
    boxed(
        b"hdlr",
        &full(0, &[&[0u8; 4][..], handler, &[0; 12], b"x\0"].concat()),
    )
}

/// One sample entry; a visual one carries `width` and `height` 24 bytes into its payload.
fn stsd(codec: &[u8; 4], width: u16, height: u16) -> Vec<u8> {
    let entry_payload = [
        &[0u8; 6][..],
        &[0, 1],
        &[0; 16],
        &width.to_be_bytes(),
        &height.to_be_bytes(),
        &[0; 50],
    ]
    .concat();
    let p = [&be(1)[..], &boxed(codec, &entry_payload)].concat();
    boxed(b"stsd", &full(0, &p))
}

/// Sample tables with no entries (the samples of these synthetic files are not indexed).
fn empty_tables() -> Vec<u8> {
    [
        boxed(b"stts", &full(0, &be(0))),
        boxed(b"stsc", &full(0, &be(0))),
        boxed(b"stsz", &full(0, &[be(0), be(0)].concat())),
        boxed(b"stco", &full(0, &be(0))),
    ]
    .concat()
}

fn trak(tkhd: Vec<u8>, handler: &[u8; 4], stsd: Vec<u8>) -> Vec<u8> {
    let stbl = boxed(b"stbl", &[stsd, empty_tables()].concat());
    let minf = boxed(b"minf", &stbl);
    let mdia = boxed(b"mdia", &[hdlr(handler), minf].concat());
    boxed(b"trak", &[tkhd, mdia].concat())
}

fn video_trak(width: u32, height: u32) -> Vec<u8> {
    trak(tkhd(0, width, height, false), b"vide", stsd(b"avc1", 0, 0))
}

fn audio_trak() -> Vec<u8> {
    trak(tkhd(0, 0, 0, false), b"soun", stsd(b"mp4a", 0, 0))
}

fn moov(mvhd: Vec<u8>, traks: &[Vec<u8>]) -> Vec<u8> {
    boxed(b"moov", &[&[mvhd][..], traks].concat().concat())
}

fn good_moov() -> Vec<u8> {
    moov(mvhd(1000, 10_500), &[video_trak(1080, 1920), audio_trak()])
}

fn mdat(n: usize) -> Vec<u8> {
    boxed(b"mdat", &vec![0x11; n])
}

fn fast_start() -> Vec<u8> {
    [ftyp(b"isom"), good_moov(), mdat(1000)].concat()
}

fn check(bytes: &[u8]) -> Result<VideoInfo, ValidationError> {
    validate_mp4(&mut Cursor::new(bytes))
}

fn err(bytes: &[u8]) -> ValidationError {
    check(bytes).unwrap_err()
}

// ---- Good files ----

#[test]
fn fast_start_file() {
    let file = fast_start();
    let info = check(&file).unwrap();
    assert_eq!(
        info,
        VideoInfo {
            brand: "isom".into(),
            compatible_brands: vec!["isom".into(), "iso2".into(), "avc1".into(), "mp41".into()],
            duration_seconds: 10.5,
            width: Some(1080),
            height: Some(1920),
            codecs: vec!["avc1".into(), "mp4a".into()],
            has_video: true,
            has_audio: true,
            fast_start: true,
            size: file.len() as u64,
        }
    );
}

#[test]
fn moov_after_mdat() {
    let info = check(&[ftyp(b"mp42"), mdat(1000), good_moov()].concat()).unwrap();
    assert!(!info.fast_start);
    assert_eq!(info.brand, "mp42");
    assert_eq!((info.width, info.height), (Some(1080), Some(1920)));
}

#[test]
fn largesize_mdat() {
    let file = [ftyp(b"isom"), good_moov(), boxed64(b"mdat", &[7; 300])].concat();
    assert_eq!(check(&file).unwrap().size, file.len() as u64);
    let file = [ftyp(b"isom"), boxed64(b"mdat", &[7; 300]), good_moov()].concat();
    assert!(!check(&file).unwrap().fast_start);
}

#[test]
fn size_zero_last_mdat() {
    let file = [
        ftyp(b"isom"),
        good_moov(),
        be(0).to_vec(),
        b"mdat".to_vec(),
        vec![5; 999],
    ]
    .concat();
    assert!(check(&file).unwrap().fast_start);
}

#[test]
fn audio_only() {
    let file = [
        ftyp(b"M4A "),
        moov(mvhd(44100, 441_000), &[audio_trak()]),
        mdat(10),
    ]
    .concat();
    let info = check(&file).unwrap();
    assert_eq!((info.has_video, info.has_audio), (false, true));
    assert_eq!((info.width, info.height), (None, None));
    assert_eq!(info.codecs, ["mp4a"]);
    assert_eq!(info.duration_seconds, 10.0);
}

#[test]
fn version_1_boxes_and_rotation() {
    let video = trak(tkhd(1, 1920, 1080, true), b"vide", stsd(b"hvc1", 0, 0));
    let file = [
        ftyp(b"iso5"),
        moov(mvhd_v1(90_000, 900_000), &[video]),
        mdat(10),
    ]
    .concat();
    let info = check(&file).unwrap();
    assert_eq!(info.duration_seconds, 10.0);
    assert_eq!((info.width, info.height), (Some(1080), Some(1920)));
    assert_eq!(info.codecs, ["hvc1"]);
}

#[test]
fn dimensions_from_the_sample_entry_when_tkhd_has_none() {
    let video = trak(tkhd(0, 0, 0, false), b"vide", stsd(b"hev1", 720, 1280));
    let file = [ftyp(b"isom"), moov(mvhd(600, 600), &[video]), mdat(10)].concat();
    let info = check(&file).unwrap();
    assert_eq!((info.width, info.height), (Some(720), Some(1280)));
}

#[test]
fn fragmented_duration_from_mehd() {
    let mvex = boxed(b"mvex", &boxed(b"mehd", &full(0, &be(5000))));
    let moov = boxed(
        b"moov",
        &[mvhd(1000, 0), video_trak(640, 360), mvex].concat(),
    );
    let moof = boxed(b"moof", &boxed(b"mfhd", &full(0, &be(1))));
    let file = [ftyp(b"iso6"), moov, moof, mdat(100)].concat();
    assert_eq!(check(&file).unwrap().duration_seconds, 5.0);
}

#[test]
fn unknown_printable_brand_is_accepted_and_recorded() {
    let file = [ftyp(b"abcd"), good_moov(), mdat(10)].concat();
    assert_eq!(check(&file).unwrap().brand, "abcd");
}

// ---- What gets rejected ----

#[test]
fn zero_bytes() {
    assert_eq!(err(&[]), ValidationError::Empty);
    assert_eq!(err(&[]).code(), "empty-file");
}

#[test]
fn captcha_page_served_as_video() {
    let e = err(CAPTCHA.as_bytes());
    assert!(
        matches!(&e, ValidationError::Html { xml: false, title: Some(t), .. } if t == "验证码中间页")
    );
    assert_eq!(
        e.to_string(),
        "HTML page served as video (title: 验证码中间页)"
    );
    assert_eq!(e.code(), "html-as-video");
    // A BOM and blank lines first, no title.
    let e = err(b"\xef\xbb\xbf\n  <!DOCTYPE html><body>Forbidden</body>");
    assert_eq!(
        e.to_string(),
        "HTML page served as video (starts with: <!DOCTYPE html><body>Forbidden</body>)"
    );
    let e = err(b"<?xml version=\"1.0\"?><Error><Code>AccessDenied</Code></Error>");
    assert!(
        e.to_string().starts_with("XML document served as video"),
        "{e}"
    );
}

#[test]
fn cdn_403_json_served_as_video() {
    let e = err(CDN_403.as_bytes());
    assert!(matches!(e, ValidationError::Json { .. }), "{e:?}");
    assert_eq!(e.code(), "json-as-video");
    let msg = e.to_string();
    assert!(
        msg.starts_with("JSON served as video: { \"_fixture_note\": \"CDN refusal"),
        "{msg}"
    );
    assert!(msg.ends_with('…'), "{msg}");
    assert_eq!(err(b"[]").code(), "json-as-video");
}

#[test]
fn text_and_other_formats_are_not_mp4() {
    let e = err(b"403 Forbidden\nopenresty");
    assert_eq!(
        e.to_string(),
        "not an MP4 file (no ftyp box at the start): found 403 Forbidden\\x0aopenresty"
    );
    assert_eq!(e.code(), "not-mp4");
    let e = err(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x02\x00\x00\x01\x00\x01");
    assert!(e.to_string().ends_with("(looks like a JPEG image)"), "{e}");
    let e = err(&[0; 100]);
    assert!(
        e.to_string().ends_with("(looks like nothing but zeros)"),
        "{e}"
    );
}

#[test]
fn truncated_mdat() {
    let mut file = fast_start();
    let mdat_at = (ftyp(b"isom").len() + good_moov().len()) as u64;
    file.truncate(file.len() - 100);
    let e = err(&file);
    assert_eq!(
        e,
        ValidationError::Truncated {
            box_type: "mdat".into(),
            offset: mdat_at,
            declared: 1008,
            available: 908
        }
    );
    assert_eq!(
        e.to_string(),
        format!(
            "truncated: mdat box at byte {mdat_at} declares 1008 bytes but only 908 remain (100 missing)"
        )
    );
    assert_eq!(e.code(), "truncated");
    // Cut inside the header of the last box.
    let file = [ftyp(b"isom"), good_moov(), b"\0\0\x03".to_vec()].concat();
    assert_eq!(err(&file).code(), "truncated");
}

#[test]
fn missing_moov_or_mdat() {
    let e = err(&[ftyp(b"isom"), mdat(100)].concat());
    assert_eq!(e, ValidationError::MissingBox("moov"));
    assert_eq!(e.code(), "missing-moov");
    assert!(e.to_string().starts_with("no moov box"), "{e}");
    let e = err(&[ftyp(b"isom"), good_moov()].concat());
    assert_eq!(e.code(), "missing-mdat");
    let e = err(&[ftyp(b"isom"), boxed(b"moov", &video_trak(1, 1)), mdat(1)].concat());
    assert_eq!(e, ValidationError::MissingBox("mvhd"));
}

#[test]
fn ftyp_followed_by_zeros() {
    let file = [ftyp(b"isom"), vec![0; 2_900_000 - 32]].concat();
    let e = err(&file);
    assert_eq!(
        e,
        ValidationError::ZeroFilled {
            offset: 32,
            after: "ftyp".into(),
            length: 2_899_968
        }
    );
    assert_eq!(
        e.to_string(),
        "ftyp followed by zeros at byte 32: not a video (2.9 MB of nothing)"
    );
    assert_eq!(e.code(), "zero-filled");
    // Zeros after moov, no mdat yet: the same.
    let file = [ftyp(b"isom"), good_moov(), vec![0; 5000]].concat();
    assert!(matches!(err(&file), ValidationError::ZeroFilled { after, .. } if after == "moov"));
}

#[test]
fn zero_duration() {
    let file = [
        ftyp(b"isom"),
        moov(mvhd(1000, 0), &[video_trak(1, 1)]),
        mdat(1),
    ]
    .concat();
    assert_eq!(err(&file), ValidationError::ZeroDuration);
    let file = [
        ftyp(b"isom"),
        moov(mvhd(0, 10), &[video_trak(1, 1)]),
        mdat(1),
    ]
    .concat();
    assert_eq!(err(&file).code(), "malformed-box");
}

#[test]
fn no_audio_or_video_track() {
    let hint = trak(tkhd(0, 0, 0, false), b"hint", stsd(b"rtp ", 0, 0));
    let e = err(&[ftyp(b"isom"), moov(mvhd(1, 1), &[hint]), mdat(1)].concat());
    assert_eq!(
        e.to_string(),
        "no video or audio track in moov (tracks found: hint)"
    );
    let e = err(&[ftyp(b"isom"), moov(mvhd(1, 1), &[]), mdat(1)].concat());
    assert_eq!(
        e.to_string(),
        "no video or audio track in moov (tracks found: none)"
    );
    assert_eq!(e.code(), "no-tracks");
}

#[test]
fn bad_box_size() {
    let file = [
        ftyp(b"isom"),
        good_moov(),
        be(4).to_vec(),
        b"mdat".to_vec(),
        vec![0; 20],
    ]
    .concat();
    let e = err(&file);
    assert!(
        matches!(&e, ValidationError::BadBoxSize { box_type, size: 4, .. } if box_type == "mdat")
    );
    assert_eq!(e.code(), "bad-box-size");
    let file = [ftyp(b"isom"), boxed64(b"mdat", &[]), good_moov()].concat();
    let mut bad = file.clone();
    bad[32 + 15] = 8; // largesize 8 < 16
    assert_eq!(err(&bad).code(), "bad-box-size");
}

#[test]
fn garbage_after_the_last_box() {
    let good = fast_start();
    let file = [good.clone(), b"\xde\xad\xbe\xef\xff\xfegarbage!".to_vec()].concat();
    let e = err(&file);
    assert_eq!(
        e,
        ValidationError::TrailingData {
            offset: good.len() as u64,
            length: 14
        }
    );
    assert_eq!(e.code(), "trailing-data");
    assert_eq!(
        err(&[good.clone(), vec![1, 2]].concat()).code(),
        "trailing-data"
    );
    assert_eq!(err(&[good, vec![0; 64]].concat()).code(), "trailing-data");
    // Garbage in the middle is not trailing.
    let file = [
        ftyp(b"isom"),
        b"\xde\xad\xbe\xef\xff\xfegarbage!".to_vec(),
        good_moov(),
        mdat(1),
    ]
    .concat();
    assert_eq!(err(&file).code(), "bad-box-type");
}

#[test]
fn brands() {
    let e = err(&[ftyp(b"\0\x01ab"), good_moov(), mdat(1)].concat());
    assert_eq!(e, ValidationError::UnknownBrand("\\x00\\x01ab".into()));
    let e = err(&[ftyp(b"heic"), good_moov(), mdat(1)].concat());
    assert_eq!(
        e.to_string(),
        "ftyp major brand \"heic\" is not a video brand"
    );
    assert_eq!(e.code(), "unknown-brand");
}

#[test]
fn malformed_child_in_moov() {
    let broken = [be(500).to_vec(), b"trak".to_vec(), vec![0; 20]].concat();
    let file = [
        ftyp(b"isom"),
        boxed(b"moov", &[mvhd(1, 1), broken].concat()),
        mdat(1),
    ]
    .concat();
    let e = err(&file);
    assert_eq!(e.code(), "malformed-box");
    assert!(
        e.to_string().starts_with("malformed moov box: child trak"),
        "{e}"
    );
}

#[test]
fn codes_are_distinct_kebab_case() {
    let s = String::new;
    let all = [
        ValidationError::Empty,
        ValidationError::Html {
            xml: false,
            title: None,
            snippet: s(),
            instead_of: "video",
        },
        ValidationError::Json {
            snippet: s(),
            instead_of: "video",
        },
        ValidationError::NotMp4 {
            found: s(),
            looks_like: None,
        },
        ValidationError::NotImage {
            found: s(),
            looks_like: None,
        },
        ValidationError::UnknownBrand(s()),
        ValidationError::MissingBox("moov"),
        ValidationError::MissingBox("mdat"),
        ValidationError::MissingBox("mvhd"),
        ValidationError::Truncated {
            box_type: s(),
            offset: 0,
            declared: 1,
            available: 0,
        },
        ValidationError::BadBoxSize {
            box_type: s(),
            offset: 0,
            size: 0,
        },
        ValidationError::BadBoxType {
            offset: 0,
            found: s(),
        },
        ValidationError::ZeroFilled {
            offset: 0,
            after: s(),
            length: 0,
        },
        ValidationError::TrailingData {
            offset: 0,
            length: 0,
        },
        ValidationError::MoovTooLarge { size: 0 },
        ValidationError::Malformed {
            box_type: s(),
            reason: s(),
        },
        ValidationError::NoTracks { handlers: vec![] },
        ValidationError::ZeroDuration,
        ValidationError::SizeMismatch {
            expected: 0,
            actual: 0,
        },
        ValidationError::Io(s()),
        ValidationError::Image(s()),
    ];
    let mut codes: Vec<&str> = all.iter().map(ValidationError::code).collect();
    for c in &codes {
        assert!(
            c.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
            "{c}"
        );
    }
    codes.sort();
    codes.dedup();
    assert_eq!(codes.len(), all.len());
}

#[test]
fn a_cut_file_is_refused_and_a_changed_byte_never_panics() {
    for good in [
        fast_start(),
        [ftyp(b"isom"), mdat(50), good_moov()].concat(),
    ] {
        assert!(check(&good).is_ok());
        for at in 0..good.len() {
            for v in [0x00, 0x01, 0x7f, 0xff] {
                let mut bad = good.clone();
                bad[at] = v;
                // A changed byte may leave a valid file (a size in mdat's payload, a
                // reserved field); refused, it is refused with a code of its own.
                if let Err(e) = check(&bad) {
                    assert!(!e.code().is_empty() && !e.to_string().is_empty());
                }
            }
            // A file cut short is never whole.
            assert!(check(&good[..at]).is_err(), "cut at {at} of {}", good.len());
        }
    }
}

// ---- mdat is never read ----

/// A file of `len` bytes: `head`, zeros, then `tail` at the end; never materialised.
/// Counts the bytes read.
struct Virtual {
    head: Vec<u8>,
    tail: Vec<u8>,
    len: u64,
    pos: u64,
    read: u64,
}

impl Virtual {
    fn new(head: Vec<u8>, tail: Vec<u8>, len: u64) -> Self {
        Self {
            head,
            tail,
            len,
            pos: 0,
            read: 0,
        }
    }

    fn byte(&self, at: u64) -> u8 {
        let tail_at = self.len - self.tail.len() as u64;
        if at >= tail_at {
            self.tail[(at - tail_at) as usize]
        } else {
            self.head.get(at as usize).copied().unwrap_or(0)
        }
    }
}

impl Read for Virtual {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf.len().min(self.len.saturating_sub(self.pos) as usize);
        for (i, b) in buf[..n].iter_mut().enumerate() {
            *b = self.byte(self.pos + i as u64);
        }
        self.pos += n as u64;
        self.read += n as u64;
        Ok(n)
    }
}

impl Seek for Virtual {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let pos = match to {
            SeekFrom::Start(p) => p as i128,
            SeekFrom::End(d) => self.len as i128 + d as i128,
            SeekFrom::Current(d) => self.pos as i128 + d as i128,
        };
        self.pos = u64::try_from(pos).map_err(|_| io::Error::other("seek before start"))?;
        Ok(self.pos)
    }
}

#[test]
fn a_50_mb_mdat_is_not_read() {
    const MDAT: u64 = 50 << 20;
    let mdat_header = [&be(1)[..], b"mdat", &(MDAT + 16).to_be_bytes()].concat();
    let head = [ftyp(b"isom"), good_moov(), mdat_header.clone()].concat();
    let len = head.len() as u64 + MDAT;
    let mut file = Virtual::new(head, vec![], len);
    let info = validate_mp4(&mut file).unwrap();
    assert!(info.fast_start);
    assert_eq!(info.size, len);
    assert!(file.read < 4096, "read {} bytes", file.read);

    // moov at the end, after the big mdat.
    let head = [ftyp(b"isom"), mdat_header].concat();
    let len = head.len() as u64 + MDAT + good_moov().len() as u64;
    let mut file = Virtual::new(head, good_moov(), len);
    assert!(!validate_mp4(&mut file).unwrap().fast_start);
    assert!(file.read < 4096, "read {} bytes", file.read);
}

#[test]
fn an_oversized_moov_is_refused_unread() {
    let size = (64u64 << 20) + 1000;
    let head = [ftyp(b"isom"), be(size as u32).to_vec(), b"moov".to_vec()].concat();
    let mut file = Virtual::new(head, vec![], 32 + size);
    assert_eq!(
        validate_mp4(&mut file),
        Err(ValidationError::MoovTooLarge { size })
    );
    assert!(file.read < 4096, "read {} bytes", file.read);
}

// ---- The pipeline stage ----

fn downloaded(dir: &std::path::Path, name: &str, bytes: &[u8]) -> DownloadedFile {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    DownloadedFile {
        path,
        size: bytes.len() as u64,
        sha256: String::new(),
    }
}

#[test]
fn file_validator_describes_videos_and_images() {
    let dir = tempfile::tempdir().unwrap();
    let info = FileValidator
        .validate(&downloaded(dir.path(), "v", &fast_start()))
        .unwrap();
    assert_eq!(
        (info.mime_type.as_str(), info.extension.as_str()),
        ("video/mp4", "mp4")
    );
    assert_eq!(info.metadata["duration_seconds"], 10.5);
    assert_eq!(info.metadata["fast_start"], true);
    assert_eq!(info.metadata["codecs"], serde_json::json!(["avc1", "mp4a"]));

    let audio = [ftyp(b"M4A "), moov(mvhd(1, 1), &[audio_trak()]), mdat(1)].concat();
    let info = FileValidator
        .validate(&downloaded(dir.path(), "a", &audio))
        .unwrap();
    assert_eq!(
        (info.mime_type.as_str(), info.extension.as_str()),
        ("audio/mp4", "m4a")
    );

    let jpeg = b"\xff\xd8\xff\xc0\x00\x11\x08\x01\xe0\x02\x80\x03\x01\x22\x00\x02\x11\x01\x03\x11\x01\xff\xd9";
    let info = FileValidator
        .validate(&downloaded(dir.path(), "i", jpeg))
        .unwrap();
    assert_eq!(
        (info.mime_type.as_str(), info.extension.as_str()),
        ("image/jpeg", "jpg")
    );
    assert_eq!(
        info.metadata,
        serde_json::json!({"format": "jpeg", "width": 640, "height": 480})
    );
}

#[test]
fn file_validator_failures_are_transient_with_the_code() {
    let dir = tempfile::tempdir().unwrap();
    let mut cut = fast_start();
    cut.truncate(cut.len() - 10);
    let e = FileValidator
        .validate(&downloaded(dir.path(), "cut", &cut))
        .unwrap_err();
    assert_eq!((e.class, e.code), (ErrorClass::Transient, "truncated"));
    assert!(
        e.message.starts_with("truncated: mdat box"),
        "{}",
        e.message
    );

    let e = FileValidator
        .validate(&downloaded(dir.path(), "h", CAPTCHA.as_bytes()))
        .unwrap_err();
    assert_eq!((e.class, e.code), (ErrorClass::Transient, "html-as-video"));

    let mut file = downloaded(dir.path(), "s", &fast_start());
    file.size += 1;
    let e = FileValidator.validate(&file).unwrap_err();
    assert_eq!((e.class, e.code), (ErrorClass::Transient, "size-mismatch"));

    file.path = dir.path().join("missing");
    let e = FileValidator.validate(&file).unwrap_err();
    assert_eq!((e.class, e.code), (ErrorClass::Transient, "validate-io"));
}

mod sample_tables;
