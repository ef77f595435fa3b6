//! Real, playable media made by ffmpeg (installed by scripts/test.sh) through the validation
//! stage: what a real encoder writes must pass, with the right figures.

use std::path::Path;
use std::process::Command;

use douyin_worker::validate::{validate_file, validate_media};

/// Runs ffmpeg; panics with the way to get it when it is missing.
pub(crate) fn ffmpeg(args: &[&str]) {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("ffmpeg is needed ({e}): run bash scripts/test.sh, which installs it")
        });
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The encoder arguments of the test MP4s: H.264 (yuv420p) and AAC, as long as the shorter
/// input.
pub(crate) const H264_AAC: [&str; 7] = [
    "-c:v",
    "libx264",
    "-pix_fmt",
    "yuv420p",
    "-c:a",
    "aac",
    "-shortest",
];

/// A 2 s 320x240 H.264 video with AAC audio; `faststart` puts `moov` first.
fn playable(path: &Path, faststart: bool) {
    let p = path.to_str().unwrap();
    let mut args = vec![
        "-f",
        "lavfi",
        "-i",
        "testsrc=duration=2:size=320x240:rate=25",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:duration=2",
    ];
    args.extend(H264_AAC);
    if faststart {
        args.extend(["-movflags", "+faststart"]);
    }
    args.push(p);
    ffmpeg(&args);
    // Playable: ffmpeg decodes every frame without an error.
    ffmpeg(&["-i", p, "-f", "null", "-"]);
}

#[test]
fn real_playable_mp4s_pass_with_their_figures() {
    let dir = tempfile::tempdir().unwrap();
    for faststart in [true, false] {
        let path = dir.path().join(format!("v{faststart}.mp4"));
        playable(&path, faststart);
        let size = std::fs::metadata(&path).unwrap().len();
        let info = validate_file(&path, Some(size)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(info.mime_type, "video/mp4");
        assert_eq!(info.extension, "mp4");
        let m = &info.metadata;
        assert_eq!(m["width"], 320, "{m}");
        assert_eq!(m["height"], 240, "{m}");
        let duration = m["duration_seconds"].as_f64().unwrap();
        assert!((1.9..=2.2).contains(&duration), "{m}");
        let codecs: Vec<&str> = m["codecs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect();
        assert!(codecs.contains(&"avc1") && codecs.contains(&"mp4a"), "{m}");
        assert_eq!(m["fast_start"], faststart, "{m}");
        assert_eq!(m["has_audio"], true);
    }
}

#[test]
fn a_real_file_cut_short_or_zeroed_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v.mp4");
    playable(&path, true);
    let bytes = std::fs::read(&path).unwrap();
    // Cut in the middle of mdat (the download stopped early).
    let cut = &bytes[..bytes.len() * 2 / 3];
    let e = validate_media(&mut std::io::Cursor::new(cut.to_vec())).unwrap_err();
    assert_eq!(e.code(), "truncated", "{e}");
    // The old worker's case: the ftyp box, then zeros.
    let ftyp_len = u32::from_be_bytes(bytes[0..4].try_into().unwrap()) as usize;
    let mut zeroed = bytes[..ftyp_len].to_vec();
    zeroed.resize(bytes.len(), 0);
    let e = validate_media(&mut std::io::Cursor::new(zeroed)).unwrap_err();
    assert_eq!(e.code(), "zero-filled", "{e}");
}
