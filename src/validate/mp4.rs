//! The ISO-BMFF (MP4) box walk: top-level headers from the stream, `moov` from memory.

use std::io::{Read, Seek, SeekFrom};

use super::sample_table::{self, Mdats};
use super::{
    ValidationError, VideoInfo, file_len, found, looks_like, printable, read_head, sniff_text,
};

/// The largest `moov` read into memory.
const MOOV_LIMIT: u64 = 64 << 20;

/// Major brands seen on MP4 videos. Others that are printable are accepted (and recorded).
const KNOWN_BRANDS: &[&[u8; 4]] = &[
    b"isom", b"iso2", b"iso3", b"iso4", b"iso5", b"iso6", b"iso7", b"iso8", b"iso9", b"mp41",
    b"mp42", b"avc1", b"dash", b"M4V ", b"M4A ", b"qt  ", b"msnv", b"3gp4", b"3gp5", b"3gp6",
];

/// Major brands of HEIF/AVIF images: not videos.
pub(super) const IMAGE_BRANDS: &[&[u8; 4]] = &[
    b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1", b"avif", b"avis",
];

/// A top-level box.
#[derive(Debug)]
pub(super) struct BoxHeader {
    /// Its type.
    pub kind: [u8; 4],
    /// 8, or 16 with a 64-bit size.
    pub header_len: u64,
    /// Its whole size, header included (size 0 resolved to the end of the file).
    pub size: u64,
}

impl BoxHeader {
    pub(crate) fn payload_len(&self) -> u64 {
        self.size - self.header_len
    }
}

/// Reads the size of the box whose first 8 bytes are `raw`, at `offset` with `remaining`
/// bytes left in the file (at least 8); checks it fits.
pub(super) fn box_header<R: Read + Seek>(
    r: &mut R,
    offset: u64,
    remaining: u64,
    raw: [u8; 8],
) -> Result<BoxHeader, ValidationError> {
    let kind: [u8; 4] = raw[4..8].try_into().unwrap_or_default();
    let box_type = || printable(&kind);
    let (size, header_len) = match u32::from_be_bytes(raw[0..4].try_into().unwrap_or_default()) {
        0 => (remaining, 8),
        1 => {
            if remaining < 16 {
                return Err(ValidationError::Truncated {
                    box_type: box_type(),
                    offset,
                    declared: 16,
                    available: remaining,
                });
            }
            let mut large = [0u8; 8];
            r.read_exact(&mut large)?;
            (u64::from_be_bytes(large), 16)
        }
        n => (u64::from(n), 8),
    };
    if size < header_len {
        return Err(ValidationError::BadBoxSize {
            box_type: box_type(),
            offset,
            size,
        });
    }
    if size > remaining {
        return Err(ValidationError::Truncated {
            box_type: box_type(),
            offset,
            declared: size,
            available: remaining,
        });
    }
    Ok(BoxHeader {
        kind,
        header_len,
        size,
    })
}

/// Letters, digits and spaces: what real box types are made of.
pub(super) fn plausible_type(kind: &[u8]) -> bool {
    kind.iter().all(|&b| b.is_ascii_alphanumeric() || b == b' ')
}

/// Validates an MP4 (ISO-BMFF) video and describes it.
///
/// Rejects an empty file, an HTML/JSON body, a file not starting with `ftyp` (or with a
/// non-printable or image major brand), box sizes that do not add up to the file size
/// (a truncated last box, trailing garbage, a size below the header), zeros where a box
/// should start, a missing `moov`, `mdat` or `mvhd`, no video or audio track, and a zero
/// duration, and sample tables a player cannot follow: entry counts larger than their box,
/// sample counts that disagree between `stsz`, `stts` and `stsc`, chunks outside `mdat`
/// (see the `sample_table` module). Reads the top-level box headers and `moov` (at most
/// 64 MiB) only: `mdat` is seeked over, never read.
pub fn validate_mp4<R: Read + Seek>(r: &mut R) -> Result<VideoInfo, ValidationError> {
    let len = file_len(r)?;
    if len == 0 {
        return Err(ValidationError::Empty);
    }
    let head = read_head(r, super::SNIFF_LEN)?;
    sniff_text(r, &head, "video")?;
    if head.len() < 16 || &head[4..8] != b"ftyp" {
        return Err(ValidationError::NotMp4 {
            found: found(&head),
            looks_like: looks_like(&head),
        });
    }

    let mut ftyp: Option<(String, Vec<String>)> = None;
    let mut moov: Option<(u64, Moov, Vec<u8>)> = None;
    let mut first_mdat: Option<u64> = None;
    let mut mdats = Mdats::default();
    let mut prev = String::new();
    let mut offset = 0u64;
    while offset < len {
        let remaining = len - offset;
        let complete = moov.is_some() && first_mdat.is_some();
        if remaining < 8 {
            if complete {
                return Err(ValidationError::TrailingData {
                    offset,
                    length: remaining,
                });
            }
            return Err(ValidationError::Truncated {
                box_type: "box header".into(),
                offset,
                declared: 8,
                available: remaining,
            });
        }
        r.seek(SeekFrom::Start(offset))?;
        let mut raw = [0u8; 8];
        r.read_exact(&mut raw)?;
        if !plausible_type(&raw[4..8]) {
            if complete {
                return Err(ValidationError::TrailingData {
                    offset,
                    length: remaining,
                });
            }
            if raw == [0; 8] && zeros_follow(r)? {
                return Err(ValidationError::ZeroFilled {
                    offset,
                    after: prev,
                    length: remaining,
                });
            }
            return Err(ValidationError::BadBoxType {
                offset,
                found: printable(&raw),
            });
        }
        let header = box_header(r, offset, remaining, raw)?;
        match &header.kind {
            b"ftyp" if offset == 0 => ftyp = Some(parse_ftyp(r, &header)?),
            b"moov" if moov.is_some() => return Err(malformed("moov", "a second moov box")),
            b"moov" => {
                if header.size > MOOV_LIMIT {
                    return Err(ValidationError::MoovTooLarge { size: header.size });
                }
                let mut buf = vec![0u8; header.payload_len() as usize];
                r.read_exact(&mut buf)?;
                moov = Some((offset, parse_moov(&buf)?, buf));
            }
            b"mdat" => {
                first_mdat.get_or_insert(offset);
                mdats.push(offset + header.header_len..offset + header.size);
            }
            _ => {}
        }
        prev = printable(&header.kind);
        offset += header.size;
    }

    let (brand, compatible_brands) = ftyp.ok_or(ValidationError::MissingBox("ftyp"))?;
    let (moov_offset, moov, moov_buf) = moov.ok_or(ValidationError::MissingBox("moov"))?;
    let mdat_offset = first_mdat.ok_or(ValidationError::MissingBox("mdat"))?;
    sample_table::check(&moov_buf, &mdats, len)?;
    moov.into_info(brand, compatible_brands, moov_offset < mdat_offset, len)
}

/// Whether the next bytes (up to 4 KiB from the reader's position) are zeros too.
fn zeros_follow<R: Read>(r: &mut R) -> Result<bool, ValidationError> {
    let mut buf = Vec::new();
    r.take(4096).read_to_end(&mut buf)?;
    Ok(buf.iter().all(|&b| b == 0))
}

fn parse_ftyp<R: Read>(
    r: &mut R,
    header: &BoxHeader,
) -> Result<(String, Vec<String>), ValidationError> {
    let n = header.payload_len();
    if !(8..=4096).contains(&n) || !n.is_multiple_of(4) {
        return Err(malformed("ftyp", format!("payload of {n} bytes")));
    }
    let mut p = vec![0u8; n as usize];
    r.read_exact(&mut p)?;
    let major = &p[0..4];
    if !major.iter().all(|b| (0x20..0x7f).contains(b))
        || IMAGE_BRANDS.iter().any(|b| &b[..] == major)
    {
        return Err(ValidationError::UnknownBrand(printable(major)));
    }
    if !KNOWN_BRANDS.iter().any(|b| &b[..] == major) {
        tracing::debug!(brand = %printable(major), "unknown ftyp major brand");
    }
    let compatible = p[8..].chunks(4).map(printable).collect();
    Ok((printable(major), compatible))
}

pub(super) fn malformed(box_type: &str, reason: impl Into<String>) -> ValidationError {
    ValidationError::Malformed {
        box_type: box_type.into(),
        reason: reason.into(),
    }
}

pub(super) fn be16(p: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([p[at], p[at + 1]])
}

pub(super) fn be32(p: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([p[at], p[at + 1], p[at + 2], p[at + 3]])
}

pub(super) fn be64(p: &[u8], at: usize) -> u64 {
    (u64::from(be32(p, at)) << 32) | u64::from(be32(p, at + 4))
}

/// Checks that the payload of `kind` has at least `need` bytes.
pub(super) fn need(kind: &str, p: &[u8], need: usize) -> Result<(), ValidationError> {
    if p.len() < need {
        return Err(malformed(kind, format!("{} bytes, needs {need}", p.len())));
    }
    Ok(())
}

/// The child boxes of an in-memory container payload: `(type, payload)`. Fewer than 8 bytes
/// left at the end are ignored (QuickTime writes a 4-byte terminator in some containers).
pub(super) struct Children<'a> {
    buf: &'a [u8],
    pos: usize,
    parent: &'static str,
}

/// Iterates over the children of the container `parent` whose payload is `buf`.
pub(super) fn children<'a>(buf: &'a [u8], parent: &'static str) -> Children<'a> {
    Children {
        buf,
        pos: 0,
        parent,
    }
}

impl<'a> Iterator for Children<'a> {
    type Item = Result<([u8; 4], &'a [u8]), ValidationError>;

    fn next(&mut self) -> Option<Self::Item> {
        let rest = self.buf.len().checked_sub(self.pos)?;
        if rest < 8 {
            return None;
        }
        let at = self.pos;
        let b = &self.buf[at..];
        let kind: [u8; 4] = b[4..8].try_into().unwrap_or_default();
        let (size, header) = match be32(b, 0) {
            0 => (rest as u64, 8),
            1 if rest >= 16 => (be64(b, 8), 16),
            n => (u64::from(n), 8),
        };
        if size < header || size > rest as u64 {
            self.pos = self.buf.len();
            let why = format!(
                "child {} at byte {at} declares {size} bytes, {rest} left",
                printable(&kind)
            );
            return Some(Err(malformed(self.parent, why)));
        }
        self.pos += size as usize;
        Some(Ok((kind, &b[header as usize..size as usize])))
    }
}

/// The first child of type `kind`.
pub(super) fn child<'a>(
    buf: &'a [u8],
    parent: &'static str,
    kind: &[u8; 4],
) -> Result<Option<&'a [u8]>, ValidationError> {
    for c in children(buf, parent) {
        let (k, p) = c?;
        if &k == kind {
            return Ok(Some(p));
        }
    }
    Ok(None)
}

/// What `moov` says.
#[derive(Debug, Default)]
struct Moov {
    timescale: u32,
    /// `None` when 0 or all ones (unknown).
    duration: Option<u64>,
    /// `mvex`/`mehd` fragment duration (fragmented files).
    fragment_duration: Option<u64>,
    tracks: Vec<Track>,
}

#[derive(Debug, Default)]
struct Track {
    handler: [u8; 4],
    width: u32,
    height: u32,
    codec: Option<[u8; 4]>,
}

fn parse_moov(buf: &[u8]) -> Result<Moov, ValidationError> {
    let mut moov = Moov::default();
    let mut mvhd_seen = false;
    for c in children(buf, "moov") {
        let (kind, p) = c?;
        match &kind {
            b"mvhd" => {
                mvhd_seen = true;
                let (timescale, duration) = match p.first() {
                    Some(0) => {
                        need("mvhd", p, 20)?;
                        let d = be32(p, 16);
                        (be32(p, 12), (d != u32::MAX).then_some(u64::from(d)))
                    }
                    Some(1) => {
                        need("mvhd", p, 32)?;
                        let d = be64(p, 24);
                        (be32(p, 20), (d != u64::MAX).then_some(d))
                    }
                    v => return Err(malformed("mvhd", format!("version {v:?}"))),
                };
                moov.timescale = timescale;
                moov.duration = duration.filter(|&d| d > 0);
            }
            b"trak" => moov.tracks.push(parse_trak(p)?),
            b"mvex" => {
                if let Some(m) = child(p, "mvex", b"mehd")? {
                    let d = match m.first() {
                        Some(1) => need("mehd", m, 12).map(|_| be64(m, 4))?,
                        _ => need("mehd", m, 8).map(|_| u64::from(be32(m, 4)))?,
                    };
                    moov.fragment_duration = (d > 0).then_some(d);
                }
            }
            _ => {}
        }
    }
    if !mvhd_seen {
        return Err(ValidationError::MissingBox("mvhd"));
    }
    if moov.timescale == 0 {
        return Err(malformed("mvhd", "timescale 0"));
    }
    Ok(moov)
}

fn parse_trak(buf: &[u8]) -> Result<Track, ValidationError> {
    let mut t = Track::default();
    if let Some(p) = child(buf, "trak", b"tkhd")? {
        let (matrix, dims) = match p.first() {
            Some(0) => (40, 76),
            Some(1) => (52, 88),
            v => return Err(malformed("tkhd", format!("version {v:?}"))),
        };
        need("tkhd", p, dims + 8)?;
        t.width = be32(p, dims) >> 16;
        t.height = be32(p, dims + 4) >> 16;
        let (a, b, c, d) = (
            be32(p, matrix),
            be32(p, matrix + 4),
            be32(p, matrix + 12),
            be32(p, matrix + 16),
        );
        if a == 0 && d == 0 && b != 0 && c != 0 {
            std::mem::swap(&mut t.width, &mut t.height);
        }
    }
    let Some(mdia) = child(buf, "trak", b"mdia")? else {
        return Ok(t);
    };
    if let Some(hdlr) = child(mdia, "mdia", b"hdlr")? {
        need("hdlr", hdlr, 12)?;
        t.handler = hdlr[8..12].try_into().unwrap_or_default();
    }
    let stsd = match child(mdia, "mdia", b"minf")? {
        Some(minf) => match child(minf, "minf", b"stbl")? {
            Some(stbl) => child(stbl, "stbl", b"stsd")?,
            None => None,
        },
        None => None,
    };
    if let Some(stsd) = stsd {
        need("stsd", stsd, 8)?;
        if be32(stsd, 4) > 0 {
            need("stsd", stsd, 16)?;
            t.codec = stsd[12..16].try_into().ok();
            // A visual sample entry holds width and height 24 bytes into its payload.
            if t.handler == *b"vide" && t.width == 0 && stsd.len() >= 44 {
                t.width = u32::from(be16(stsd, 40));
                t.height = u32::from(be16(stsd, 42));
            }
        }
    }
    Ok(t)
}

impl Moov {
    fn into_info(
        self,
        brand: String,
        compatible_brands: Vec<String>,
        fast_start: bool,
        size: u64,
    ) -> Result<VideoInfo, ValidationError> {
        let av = |t: &&Track| matches!(&t.handler, b"vide" | b"soun");
        if !self.tracks.iter().any(|t| av(&t)) {
            let handlers = self.tracks.iter().map(|t| printable(&t.handler)).collect();
            return Err(ValidationError::NoTracks { handlers });
        }
        let duration = self
            .duration
            .or(self.fragment_duration)
            .ok_or(ValidationError::ZeroDuration)?;
        let video = self.tracks.iter().find(|t| &t.handler == b"vide");
        let mut codecs: Vec<String> = Vec::new();
        for t in self.tracks.iter().filter(av) {
            if let Some(c) = t.codec.map(|c| printable(&c))
                && !codecs.contains(&c)
            {
                codecs.push(c);
            }
        }
        Ok(VideoInfo {
            brand,
            compatible_brands,
            duration_seconds: duration as f64 / f64::from(self.timescale),
            width: video.map(|v| v.width).filter(|&w| w > 0),
            height: video.map(|v| v.height).filter(|&h| h > 0),
            codecs,
            has_video: video.is_some(),
            has_audio: self.tracks.iter().any(|t| &t.handler == b"soun"),
            fast_start,
            size,
        })
    }
}
