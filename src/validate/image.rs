//! Images: magic bytes and dimensions of JPEG, PNG, WebP and HEIC files.

use std::io::{self, BufReader, Read, Seek, SeekFrom};

use super::mp4::{be16, be32, box_header, children, malformed, need, plausible_type};
use super::{
    ImageFormat, ImageInfo, SNIFF_LEN, ValidationError, file_len, found, looks_like, printable,
    read_head, sniff_text,
};

const PNG_SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";
const PNG_IEND: &[u8] = b"\0\0\0\0IEND\xae\x42\x60\x82";
/// `ftyp` major brands of HEIF images (HEVC-coded or generic).
const HEIF_BRANDS: &[&[u8]] = &[
    b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1",
];
/// The largest HEIC `meta` box read into memory.
const META_LIMIT: u64 = 16 << 20;

/// The image format the first bytes show, if any.
pub(super) fn detect(head: &[u8]) -> Option<ImageFormat> {
    if head.starts_with(b"\xff\xd8\xff") {
        Some(ImageFormat::Jpeg)
    } else if head.starts_with(PNG_SIGNATURE) {
        Some(ImageFormat::Png)
    } else if head.starts_with(b"RIFF") && head.get(8..12) == Some(b"WEBP") {
        Some(ImageFormat::Webp)
    } else if head.get(4..8) == Some(b"ftyp")
        && head.get(8..12).is_some_and(|b| HEIF_BRANDS.contains(&b))
    {
        Some(ImageFormat::Heic)
    } else {
        None
    }
}

/// Validates an image: JPEG, PNG, WebP or HEIC by the magic bytes, with its dimensions.
///
/// PNG must end with `IEND` and a WebP's RIFF size must fit in the file (both catch a
/// download cut short); a HEIC's boxes must add up to the file size.
pub fn validate_image<R: Read + Seek>(r: &mut R) -> Result<ImageInfo, ValidationError> {
    let len = file_len(r)?;
    if len == 0 {
        return Err(ValidationError::Empty);
    }
    let head = read_head(r, SNIFF_LEN)?;
    sniff_text(r, &head, "image")?;
    let format = detect(&head).ok_or_else(|| ValidationError::NotImage {
        found: found(&head),
        looks_like: looks_like(&head),
    })?;
    let (width, height) = match format {
        ImageFormat::Jpeg => jpeg(r)?,
        ImageFormat::Png => png(r, &head, len)?,
        ImageFormat::Webp => webp(&head, len)?,
        ImageFormat::Heic => heic(r, len)?,
    };
    if width == 0 || height == 0 {
        return Err(ValidationError::Image(format!(
            "{format:?} of {width}x{height} pixels"
        )));
    }
    Ok(ImageInfo {
        format,
        width,
        height,
    })
}

fn bad(msg: impl Into<String>) -> ValidationError {
    ValidationError::Image(msg.into())
}

/// Walks the JPEG markers up to the first frame header (SOF0..SOF15 but DHT, JPG, DAC).
fn jpeg<R: Read + Seek>(r: &mut R) -> Result<(u32, u32), ValidationError> {
    let mut br = BufReader::with_capacity(4096, r);
    br.seek(SeekFrom::Start(2))?;
    let eof = |e: io::Error| match e.kind() {
        io::ErrorKind::UnexpectedEof => bad("JPEG truncated before its frame header (SOF)"),
        _ => e.into(),
    };
    let mut pos = 2u64;
    let byte = |br: &mut BufReader<&mut R>, pos: &mut u64| {
        let mut b = [0u8; 1];
        br.read_exact(&mut b).map_err(eof)?;
        *pos += 1;
        Ok::<u8, ValidationError>(b[0])
    };
    loop {
        let b = byte(&mut br, &mut pos)?;
        if b != 0xff {
            return Err(bad(format!(
                "JPEG: expected a marker at byte {}, found 0x{b:02x}",
                pos - 1
            )));
        }
        let mut m = byte(&mut br, &mut pos)?;
        while m == 0xff {
            m = byte(&mut br, &mut pos)?;
        }
        match m {
            0xd8 | 0x01 | 0xd0..=0xd7 => continue,
            0xd9 => return Err(bad("JPEG ends (EOI) before any frame header (SOF)")),
            0xda => return Err(bad("JPEG scan starts before any frame header (SOF)")),
            _ => {}
        }
        let seg = u16::from(byte(&mut br, &mut pos)?) << 8 | u16::from(byte(&mut br, &mut pos)?);
        if seg < 2 {
            return Err(bad(format!("JPEG: marker 0x{m:02x} with length {seg}")));
        }
        if (0xc0..=0xcf).contains(&m) && !matches!(m, 0xc4 | 0xc8 | 0xcc) {
            if seg < 7 {
                return Err(bad(format!("JPEG: frame header of {seg} bytes")));
            }
            let mut f = [0u8; 5];
            br.read_exact(&mut f).map_err(eof)?;
            return Ok((u32::from(be16(&f, 3)), u32::from(be16(&f, 1))));
        }
        br.seek_relative(i64::from(seg) - 2)?;
        pos += u64::from(seg) - 2;
    }
}

/// PNG: the IHDR chunk first, IEND last.
fn png<R: Read + Seek>(r: &mut R, head: &[u8], len: u64) -> Result<(u32, u32), ValidationError> {
    if head.len() < 24 || &head[12..16] != b"IHDR" {
        let first = printable(head.get(12..16).unwrap_or_default());
        return Err(bad(format!(
            "PNG without an IHDR chunk first (found {first})"
        )));
    }
    let mut tail = [0u8; 12];
    if len >= 8 + 25 + 12 {
        r.seek(SeekFrom::End(-12))?;
        r.read_exact(&mut tail)?;
    }
    if tail != PNG_IEND {
        return Err(bad("PNG truncated: no IEND chunk at the end"));
    }
    Ok((be32(head, 16), be32(head, 20)))
}

/// WebP: the first chunk after `RIFF....WEBP` (`VP8 `, `VP8L` or `VP8X`).
fn webp(head: &[u8], len: u64) -> Result<(u32, u32), ValidationError> {
    let le = |at: usize, n: usize| {
        head[at..at + n]
            .iter()
            .rev()
            .fold(0u32, |acc, &b| acc << 8 | u32::from(b))
    };
    let riff = u64::from(le(4, 4));
    if riff + 8 > len {
        return Err(bad(format!(
            "WebP truncated: RIFF declares {} bytes, the file has {len}",
            riff + 8
        )));
    }
    let d = 20;
    let kind = head.get(12..16).unwrap_or_default();
    let need = if kind == b"VP8L" { d + 5 } else { d + 10 };
    if head.len() < need {
        let kind = printable(kind);
        return Err(bad(format!("WebP truncated in its first chunk ({kind})")));
    }
    match kind {
        b"VP8 " if head[d + 3..d + 6] == [0x9d, 0x01, 0x2a] => {
            Ok((le(d + 6, 2) & 0x3fff, le(d + 8, 2) & 0x3fff))
        }
        b"VP8 " => Err(bad("WebP VP8 chunk without its start code")),
        b"VP8L" if head[d] == 0x2f => {
            let bits = le(d + 1, 4);
            Ok(((bits & 0x3fff) + 1, ((bits >> 14) & 0x3fff) + 1))
        }
        b"VP8L" => Err(bad("WebP VP8L chunk without its signature")),
        b"VP8X" => Ok((le(d + 4, 3) + 1, le(d + 7, 3) + 1)),
        other => Err(bad(format!("WebP with first chunk {}", printable(other)))),
    }
}

/// HEIC: the top-level boxes must add up; dimensions from `meta`.
fn heic<R: Read + Seek>(r: &mut R, len: u64) -> Result<(u32, u32), ValidationError> {
    let mut dims = None;
    let mut offset = 0;
    while offset < len {
        let remaining = len - offset;
        if remaining < 8 {
            return Err(ValidationError::TrailingData {
                offset,
                length: remaining,
            });
        }
        r.seek(SeekFrom::Start(offset))?;
        let mut raw = [0u8; 8];
        r.read_exact(&mut raw)?;
        if !plausible_type(&raw[4..8]) {
            return Err(ValidationError::BadBoxType {
                offset,
                found: printable(&raw),
            });
        }
        let header = box_header(r, offset, remaining, raw)?;
        if &header.kind == b"meta" && dims.is_none() {
            if header.payload_len() > META_LIMIT {
                return Err(bad(format!("HEIC meta box of {} bytes", header.size)));
            }
            let mut buf = vec![0u8; header.payload_len() as usize];
            r.read_exact(&mut buf)?;
            dims = Some(heic_meta(&buf)?);
        }
        offset += header.size;
    }
    dims.ok_or_else(|| bad("HEIC without a meta box: dimensions unknown"))
}

/// The primary item's `ispe` (turned by its `irot`), else the largest `ispe`.
fn heic_meta(meta: &[u8]) -> Result<(u32, u32), ValidationError> {
    need("meta", meta, 4)?;
    let mut primary = None;
    let mut props: Vec<([u8; 4], &[u8])> = Vec::new();
    let mut assoc: Vec<(u32, Vec<u16>)> = Vec::new();
    for c in children(&meta[4..], "meta") {
        let (kind, p) = c?;
        match &kind {
            b"pitm" if p.first() == Some(&0) => {
                primary = Some(u32::from(need("pitm", p, 6).map(|_| be16(p, 4))?));
            }
            b"pitm" => primary = Some(need("pitm", p, 8).map(|_| be32(p, 4))?),
            b"iprp" => {
                for c in children(p, "iprp") {
                    let (kind, p) = c?;
                    match &kind {
                        b"ipco" => props = children(p, "ipco").collect::<Result<_, _>>()?,
                        b"ipma" => ipma(p, &mut assoc)?,
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    let ispe = |p: &[u8]| (p.len() >= 12).then(|| (be32(p, 4), be32(p, 8)));
    let of_primary = primary
        .and_then(|id| assoc.iter().find(|(item, _)| *item == id))
        .and_then(|(_, indices)| {
            let (mut dims, mut turned) = (None, false);
            for &i in indices {
                match props
                    .get(usize::from(i).wrapping_sub(1))
                    .map(|(k, p)| (k, *p))
                {
                    Some((b"ispe", p)) => dims = ispe(p),
                    Some((b"irot", p)) => turned = p.first().is_some_and(|a| a & 1 == 1),
                    _ => {}
                }
            }
            dims.map(|(w, h)| if turned { (h, w) } else { (w, h) })
        });
    let largest = || {
        props
            .iter()
            .filter(|(k, _)| k == b"ispe")
            .filter_map(|(_, p)| ispe(p))
            .max_by_key(|&(w, h)| u64::from(w) * u64::from(h))
    };
    of_primary
        .or_else(largest)
        .ok_or_else(|| bad("HEIC without an ispe property: dimensions unknown"))
}

/// Item → property associations (1-based indices into `ipco`).
fn ipma(p: &[u8], out: &mut Vec<(u32, Vec<u16>)>) -> Result<(), ValidationError> {
    need("ipma", p, 8)?;
    let (version, wide) = (p[0], p[3] & 1 == 1);
    let short = || malformed("ipma", "entries run past the box");
    let mut pos = 8;
    let mut take = |n: usize| {
        let s = p.get(pos..pos + n).ok_or_else(short)?;
        pos += n;
        Ok::<&[u8], ValidationError>(s)
    };
    for _ in 0..be32(p, 4) {
        let item = if version < 1 {
            u32::from(be16(take(2)?, 0))
        } else {
            be32(take(4)?, 0)
        };
        let count = take(1)?[0];
        let mut indices = Vec::with_capacity(usize::from(count));
        for _ in 0..count {
            indices.push(if wide {
                be16(take(2)?, 0) & 0x7fff
            } else {
                u16::from(take(1)?[0] & 0x7f)
            });
        }
        out.push((item, indices));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::*;

    const CAPTCHA: &str = include_str!("../../tests/fixtures/douyin/captcha-middle-page.html");

    /// A complete 1x1 RGBA PNG (IHDR, IDAT, IEND with valid CRCs).
    const PNG_1X1: &[u8] =
        b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0\x1f\x15\xc4\x89\
        \0\0\0\x0bIDAT\x78\x9c\x63\x60\x00\x02\x00\x00\x05\x00\x01\x7a\x5e\xab\x3f\
        \0\0\0\0IEND\xae\x42\x60\x82";

    fn check(bytes: &[u8]) -> Result<ImageInfo, ValidationError> {
        validate_image(&mut Cursor::new(bytes))
    }

    fn dims(bytes: &[u8]) -> (ImageFormat, u32, u32) {
        let i = check(bytes).unwrap();
        (i.format, i.width, i.height)
    }

    fn image_err(bytes: &[u8]) -> String {
        match check(bytes).unwrap_err() {
            ValidationError::Image(m) => m,
            other => panic!("not an image error: {other:?}"),
        }
    }

    fn segment(marker: u8, payload: &[u8]) -> Vec<u8> {
        let len = u16::try_from(payload.len() + 2).unwrap().to_be_bytes();
        [&[0xff, marker][..], &len, payload].concat()
    }

    fn sof(marker: u8, width: u16, height: u16) -> Vec<u8> {
        let p = [
            &[8u8][..],
            &height.to_be_bytes(),
            &width.to_be_bytes(),
            &[1, 1, 0x11, 0],
        ]
        .concat();
        segment(marker, &p)
    }

    #[test]
    fn png() {
        assert_eq!(dims(PNG_1X1), (ImageFormat::Png, 1, 1));
        let cut = &PNG_1X1[..PNG_1X1.len() - 5];
        assert_eq!(image_err(cut), "PNG truncated: no IEND chunk at the end");
        let mut zero = PNG_1X1.to_vec();
        zero[19] = 0; // width 0
        assert_eq!(image_err(&zero), "Png of 0x1 pixels");
        let mut first = PNG_1X1.to_vec();
        first[12..16].copy_from_slice(b"IDAT");
        assert_eq!(
            image_err(&first),
            "PNG without an IHDR chunk first (found IDAT)"
        );
    }

    #[test]
    fn jpeg() {
        let app0 = segment(0xe0, b"JFIF\0\x01\x01\0\0\x01\0\x01\0\0");
        let dht = segment(0xc4, &[0; 20]); // C4 is DHT, not a frame header
        let file = [
            &[0xff, 0xd8][..],
            &app0,
            &dht,
            &[0xff], // a fill byte
            &sof(0xc0, 640, 480),
            &[0xff, 0xd9],
        ]
        .concat();
        assert_eq!(dims(&file), (ImageFormat::Jpeg, 640, 480));
        let progressive = [&[0xff, 0xd8][..], &app0, &sof(0xc2, 1080, 1920)].concat();
        assert_eq!(dims(&progressive), (ImageFormat::Jpeg, 1080, 1920));

        let no_sof = [&[0xff, 0xd8][..], &app0, &segment(0xda, &[0; 10])].concat();
        assert_eq!(
            image_err(&no_sof),
            "JPEG scan starts before any frame header (SOF)"
        );
        let cut = [&[0xff, 0xd8][..], &app0, &[0xff, 0xe1, 0x40, 0x00, 1, 2, 3]].concat();
        assert_eq!(
            image_err(&cut),
            "JPEG truncated before its frame header (SOF)"
        );
        let junk = [&[0xff, 0xd8][..], &app0, b"junk"].concat();
        assert_eq!(
            image_err(&junk),
            "JPEG: expected a marker at byte 20, found 0x6a"
        );
    }

    fn riff(chunk: &[u8; 4], data: &[u8]) -> Vec<u8> {
        let chunk = [&chunk[..], &(data.len() as u32).to_le_bytes(), data].concat();
        let size = (chunk.len() as u32 + 4).to_le_bytes();
        [&b"RIFF"[..], &size, b"WEBP", &chunk].concat()
    }

    #[test]
    fn webp() {
        // VP8: frame tag, start code, 14-bit sizes with 2 scale bits on top.
        let vp8 = [
            &[0x30, 0x01, 0x00, 0x9d, 0x01, 0x2a][..],
            &(0x4000u16 | 400).to_le_bytes(),
            &300u16.to_le_bytes(),
        ]
        .concat();
        assert_eq!(dims(&riff(b"VP8 ", &vp8)), (ImageFormat::Webp, 400, 300));
        let bits: u32 = (300 - 1) | ((200 - 1) << 14) | (1 << 28);
        let vp8l = [&[0x2f][..], &bits.to_le_bytes()].concat();
        assert_eq!(dims(&riff(b"VP8L", &vp8l)), (ImageFormat::Webp, 300, 200));
        let vp8x = [
            &[0x10, 0, 0, 0][..],
            &(4000u32 - 1).to_le_bytes()[..3],
            &(3000u32 - 1).to_le_bytes()[..3],
        ]
        .concat();
        assert_eq!(dims(&riff(b"VP8X", &vp8x)), (ImageFormat::Webp, 4000, 3000));

        let file = riff(b"VP8X", &vp8x);
        assert_eq!(
            image_err(&file[..file.len() - 2]),
            "WebP truncated: RIFF declares 30 bytes, the file has 28"
        );
        assert_eq!(
            image_err(&riff(b"ALPH", &[0; 10])),
            "WebP with first chunk ALPH"
        );
    }

    fn boxed(kind: &[u8; 4], payload: &[u8]) -> Vec<u8> {
        [&(payload.len() as u32 + 8).to_be_bytes()[..], kind, payload].concat()
    }

    fn ispe(w: u32, h: u32) -> Vec<u8> {
        boxed(
            b"ispe",
            &[&[0u8; 4][..], &w.to_be_bytes(), &h.to_be_bytes()].concat(),
        )
    }

    /// ftyp heic + meta (pitm item 1; ipco: thumbnail ispe, main ispe, irot 90°; ipma:
    /// item 1 → main ispe and irot, item 2 → thumbnail) + mdat.
    fn heic(with_pitm: bool, props: &[Vec<u8>]) -> Vec<u8> {
        let ftyp = boxed(b"ftyp", b"heic\0\0\0\0mif1heic");
        let hdlr = boxed(b"hdlr", &[&[0u8; 8][..], b"pict", &[0; 13]].concat());
        let pitm = boxed(b"pitm", &[0, 0, 0, 0, 0, 1]);
        let ipma = boxed(
            b"ipma",
            &[0, 0, 0, 0, 0, 0, 0, 2, 0, 1, 2, 0x82, 3, 0, 2, 1, 1],
        );
        let iprp = boxed(b"iprp", &[boxed(b"ipco", &props.concat()), ipma].concat());
        let mut meta = vec![0u8; 4];
        meta.extend([hdlr, if with_pitm { pitm } else { vec![] }, iprp].concat());
        [ftyp, boxed(b"meta", &meta), boxed(b"mdat", &[9; 100])].concat()
    }

    #[test]
    fn heic_dimensions() {
        let props = [ispe(320, 240), ispe(4032, 3024), boxed(b"irot", &[1])];
        assert_eq!(dims(&heic(true, &props)), (ImageFormat::Heic, 3024, 4032));
        // No primary item: the largest ispe.
        assert_eq!(dims(&heic(false, &props)), (ImageFormat::Heic, 4032, 3024));
        assert_eq!(
            image_err(&heic(true, &[boxed(b"colr", b"nclx")])),
            "HEIC without an ispe property: dimensions unknown"
        );
        let file = heic(true, &props);
        let e = check(&file[..file.len() - 10]).unwrap_err();
        assert_eq!(e.code(), "truncated");
        let no_meta = [boxed(b"ftyp", b"mif1\0\0\0\0"), boxed(b"mdat", &[1; 10])].concat();
        assert_eq!(
            image_err(&no_meta),
            "HEIC without a meta box: dimensions unknown"
        );
    }

    #[test]
    fn a_cut_picture_is_refused_or_read_whole_and_a_changed_byte_never_panics() {
        let app0 = segment(0xe0, b"JFIF\0\x01\x01\0\0\x01\0\x01\0\0");
        let jpeg = [&[0xff, 0xd8][..], &app0, &sof(0xc0, 640, 480)].concat();
        let props = [ispe(320, 240), ispe(4032, 3024), boxed(b"irot", &[1])];
        let webp = riff(b"VP8L", &[0x2f, 1, 2, 3, 4]);
        for good in [PNG_1X1.to_vec(), jpeg, webp, heic(true, &props)] {
            let whole = check(&good).expect("the whole picture is valid");
            for at in 0..good.len() {
                for v in [0x00, 0x01, 0x7f, 0xff] {
                    let mut bad = good.clone();
                    bad[at] = v;
                    if let Err(e) = check(&bad) {
                        assert!(!e.code().is_empty() && !e.to_string().is_empty());
                    }
                }
                // A picture cut short is refused, or (cut after its header) reads as the
                // whole one: never another size or kind.
                if let Ok(cut) = check(&good[..at]) {
                    assert_eq!(cut, whole, "cut at {at} of {}", good.len());
                }
            }
        }
    }

    #[test]
    fn not_images() {
        assert_eq!(check(&[]).unwrap_err(), ValidationError::Empty);
        let e = check(b"GIF89a\x01\0\x01\0\0\0\0;").unwrap_err();
        assert_eq!(e.code(), "not-image");
        assert!(e.to_string().ends_with("(looks like a GIF image)"), "{e}");
        let e = check(CAPTCHA.as_bytes()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "HTML page served as image (title: 验证码中间页)"
        );
        let e = check(b"\0\0\0\x18ftypisom\0\0\0\0isommp42").unwrap_err();
        assert!(
            e.to_string().ends_with("(looks like an ISO-BMFF file)"),
            "{e}"
        );
    }
}
