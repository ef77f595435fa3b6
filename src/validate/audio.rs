//! MP3 soundtracks (the music of an image post): an optional ID3v2 tag, then an MPEG audio
//! frame header. Only headers are read.

use std::io::{Read, Seek, SeekFrom};

use super::ValidationError;

/// What validation found about an MP3 file.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct AudioInfo {
    /// `mp3`.
    pub format: &'static str,
    /// Whether an ID3v2 tag precedes the audio.
    pub id3: bool,
    /// MPEG version of the first frame: `1`, `2` or `2.5`.
    pub mpeg_version: &'static str,
    /// Layer of the first frame (3 for MP3).
    pub layer: u8,
    /// The file size in bytes.
    pub size: u64,
}

/// Whether the first bytes look like MP3: an ID3v2 tag or an MPEG audio frame.
pub(crate) fn detect(head: &[u8]) -> bool {
    head.starts_with(b"ID3") || frame(head).is_some()
}

/// The MPEG version and layer of a frame header at the start of `b`, if it is one.
fn frame(b: &[u8]) -> Option<(&'static str, u8)> {
    let &[a, v, c, _] = b.get(..4)? else {
        return None;
    };
    if a != 0xFF || v & 0xE0 != 0xE0 {
        return None;
    }
    let version = match (v >> 3) & 3 {
        0 => "2.5",
        2 => "2",
        3 => "1",
        _ => return None,
    };
    let layer = match (v >> 1) & 3 {
        1 => 3,
        2 => 2,
        3 => 1,
        _ => return None,
    };
    // Bitrate index 15 and sample-rate index 3 are reserved.
    if c >> 4 == 0xF || (c >> 2) & 3 == 3 {
        return None;
    }
    Some((version, layer))
}

/// Checks an MP3 file: a well-formed ID3v2 tag, if any, that fits in the file, followed by an
/// MPEG audio frame header.
pub fn validate_mp3<R: Read + Seek>(r: &mut R) -> Result<AudioInfo, ValidationError> {
    let size = r.seek(SeekFrom::End(0))?;
    if size == 0 {
        return Err(ValidationError::Empty);
    }
    r.seek(SeekFrom::Start(0))?;
    let mut head = [0u8; 10];
    let n = r.by_ref().take(10).read(&mut head)?;
    let mut offset = 0u64;
    let id3 = head.starts_with(b"ID3");
    if id3 {
        if n < 10 {
            return Err(ValidationError::Audio(format!(
                "truncated ID3 tag: {size} bytes in all"
            )));
        }
        if head[3] == 0xFF || head[4] == 0xFF || head[6..10].iter().any(|b| b & 0x80 != 0) {
            return Err(ValidationError::Audio(format!(
                "malformed ID3 tag header: version {}.{}, size bytes {:02x?}",
                head[3],
                head[4],
                &head[6..10]
            )));
        }
        let tag = head[6..10]
            .iter()
            .fold(0u64, |acc, b| (acc << 7) | u64::from(*b));
        let footer = if head[5] & 0x10 != 0 { 10 } else { 0 };
        offset = 10 + tag + footer;
        if offset >= size {
            return Err(ValidationError::Audio(format!(
                "the ID3 tag declares {} bytes but the file has {size}: no audio after it",
                offset
            )));
        }
    }
    r.seek(SeekFrom::Start(offset))?;
    let mut frame_head = [0u8; 4];
    let got = r.by_ref().take(4).read(&mut frame_head)?;
    match frame(&frame_head[..got]) {
        Some((mpeg_version, layer)) => Ok(AudioInfo {
            format: "mp3",
            id3,
            mpeg_version,
            layer,
            size,
        }),
        None => Err(ValidationError::Audio(format!(
            "no MPEG audio frame at byte {offset}: found {}",
            super::printable(&frame_head[..got])
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn id3(tag_len: u32, body: &[u8]) -> Vec<u8> {
        let mut b = b"ID3\x04\x00\x00".to_vec();
        b.extend((0..4).rev().map(|i| ((tag_len >> (7 * i)) & 0x7F) as u8));
        b.extend(std::iter::repeat_n(0u8, tag_len as usize));
        b.extend_from_slice(body);
        b
    }

    const FRAME: [u8; 4] = [0xFF, 0xFB, 0x90, 0x64];

    #[test]
    fn an_id3_tag_then_a_frame_is_mp3() {
        let mut file = id3(300, &FRAME);
        file.extend(vec![0u8; 1000]);
        let info = validate_mp3(&mut Cursor::new(&file)).unwrap();
        assert_eq!((info.id3, info.mpeg_version, info.layer), (true, "1", 3));
        assert_eq!(info.size, file.len() as u64);
        assert!(detect(&file));
        let bare = [FRAME.as_slice(), &[0u8; 500]].concat();
        assert!(!validate_mp3(&mut Cursor::new(&bare)).unwrap().id3);
    }

    #[test]
    fn broken_files_say_what_is_wrong() {
        let cut = id3(5000, &[]);
        let e = validate_mp3(&mut Cursor::new(&cut[..200])).unwrap_err();
        assert!(e.to_string().contains("no audio after it"), "{e}");
        let text = id3(10, b"<html>captcha</html>");
        let e = validate_mp3(&mut Cursor::new(&text)).unwrap_err();
        assert_eq!(e.code(), "bad-audio");
        assert!(
            e.to_string()
                .starts_with("bad audio: no MPEG audio frame at byte 20: found <htm"),
            "{e}"
        );
        let mut bad_size = id3(10, &FRAME);
        bad_size[7] = 0x80;
        let e = validate_mp3(&mut Cursor::new(&bad_size)).unwrap_err();
        assert!(e.to_string().contains("malformed ID3 tag header"), "{e}");
        assert!(!detect(b"<!DOCTYPE html>"));
        assert!(!detect(&[0xFF, 0xFB, 0xF0, 0x00]), "reserved bitrate index");
    }
}
