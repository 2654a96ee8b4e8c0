//! A text compressed once and served many times with a different short value in its holes (a
//! page and its CSP nonce): the parts between the holes are deflated once, each by a fresh
//! compressor ending on a byte boundary (a sync flush), so no back-reference crosses a hole; each
//! response writes the holes' value as stored (uncompressed) deflate blocks between them and
//! wraps the whole in one gzip member (RFC 1951 §3.2.4, RFC 1952 §2.3), its CRC-32 combined from
//! the parts' (taken once) and the value's. The cost of a response is a copy of the compressed
//! parts, not a compression.

use flate2::{Compress, Compression, Crc, FlushCompress, Status};

pub struct GzipTemplate {
    /// The text between the holes (one more than there are holes).
    parts: Vec<Vec<u8>>,
    /// Each part deflated on its own; all but the last end with a sync flush, the last is final.
    deflated: Vec<Vec<u8>>,
    /// Each part's CRC-32, combined with the fill's for each response.
    crcs: Vec<Crc>,
}

impl GzipTemplate {
    /// `text` with a hole wherever `hole` occurs (an empty `hole` makes none). None only if the
    /// compressor failed, which it does not for input in memory.
    pub fn new(text: &[u8], hole: &[u8]) -> Option<GzipTemplate> {
        let parts = split(text, hole);
        let last = parts.len() - 1;
        let flush = |i| if i == last { FlushCompress::Finish } else { FlushCompress::Sync };
        let deflated = parts.iter().enumerate().map(|(i, p)| deflate(p, flush(i))).collect::<Option<_>>()?;
        let crcs = parts.iter().map(|p| crc_of(p)).collect();
        Some(GzipTemplate { parts, deflated, crcs })
    }

    /// The text with `fill` in every hole.
    pub fn plain(&self, fill: &[u8]) -> Vec<u8> {
        let holes = self.parts.len() - 1;
        let mut out = Vec::with_capacity(self.parts.iter().map(Vec::len).sum::<usize>() + holes * fill.len());
        for (i, p) in self.parts.iter().enumerate() {
            if i > 0 {
                out.extend_from_slice(fill);
            }
            out.extend_from_slice(p);
        }
        out
    }

    /// The same text as [`plain`](Self::plain), as one gzip member.
    pub fn gzip(&self, fill: &[u8]) -> Vec<u8> {
        // Header: magic, deflate, no flags, no time, no extra flags, unknown OS.
        let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255];
        out.reserve(self.deflated.iter().map(Vec::len).sum::<usize>() + self.parts.len() * (fill.len() + 5) + 8);
        let (fill_crc, mut crc) = (crc_of(fill), Crc::new());
        for (i, (d, part_crc)) in self.deflated.iter().zip(&self.crcs).enumerate() {
            if i > 0 {
                stored_blocks(&mut out, fill);
                crc.combine(&fill_crc);
            }
            out.extend_from_slice(d);
            crc.combine(part_crc);
        }
        out.extend_from_slice(&crc.sum().to_le_bytes());
        out.extend_from_slice(&crc.amount().to_le_bytes());
        out
    }
}

fn crc_of(bytes: &[u8]) -> Crc {
    let mut crc = Crc::new();
    crc.update(bytes);
    crc
}

fn split(text: &[u8], hole: &[u8]) -> Vec<Vec<u8>> {
    let mut parts = Vec::new();
    let mut rest = text;
    while let Some(at) = (!hole.is_empty()).then(|| rest.windows(hole.len()).position(|w| w == hole)).flatten() {
        parts.push(rest[..at].to_vec());
        rest = &rest[at + hole.len()..];
    }
    parts.push(rest.to_vec());
    parts
}

/// Raw deflate of `input` by a fresh compressor, ended by `flush` (Sync: byte-aligned, not final).
fn deflate(input: &[u8], flush: FlushCompress) -> Option<Vec<u8>> {
    let mut c = Compress::new(Compression::best(), false);
    let mut out = Vec::with_capacity(input.len() / 3 + 64);
    loop {
        if out.capacity() - out.len() < 64 {
            out.reserve(out.capacity().max(1024));
        }
        let read = c.total_in() as usize;
        // Into a Vec with room, compressing cannot fail (its errors are for inflating).
        let status = c.compress_vec(&input[read..], &mut out, flush).ok()?;
        let all_in = c.total_in() as usize == input.len();
        let flushed = match flush {
            FlushCompress::Finish => status == Status::StreamEnd,
            // Everything is out when the flush did not fill the room it had.
            _ => all_in && out.len() < out.capacity(),
        };
        if flushed {
            return Some(out);
        }
    }
}

/// `bytes` as stored deflate blocks, none final (we are byte-aligned after a sync flush).
fn stored_blocks(out: &mut Vec<u8>, bytes: &[u8]) {
    for chunk in bytes.chunks(u16::MAX as usize) {
        let len = chunk.len() as u16;
        out.push(0); // BFINAL = 0, BTYPE = 00 (stored), padded to the byte
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(chunk);
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    fn gunzip(bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(bytes).read_to_end(&mut out).expect("a valid gzip member");
        out
    }

    #[test]
    fn every_response_decodes_to_the_text_with_its_own_value_in_the_holes() {
        let page = "<script nonce=\"N0N0N0N0\">a</script><p>".to_string() + &"chart ".repeat(5000) + "N0N0N0N0";
        let cases: Vec<(Vec<u8>, &[u8])> = vec![
            (page.clone().into_bytes(), b"N0N0N0N0"),
            (b"N0N0N0N0N0N0N0N0".to_vec(), b"N0N0N0N0"), // holes only, side by side
            (b"no hole here".to_vec(), b"N0N0N0N0"),
            (Vec::new(), b"N0N0N0N0"),
            (page.clone().into_bytes(), b""),
        ];
        for (text, hole) in cases {
            let t = GzipTemplate::new(&text, hole).unwrap();
            for fill in [b"fresh-nonce-1".as_slice(), b"", &[b'x'; 70_000]] {
                let expected = if hole.is_empty() {
                    text.clone()
                } else {
                    String::from_utf8_lossy(&text)
                        .replace(std::str::from_utf8(hole).unwrap(), std::str::from_utf8(fill).unwrap())
                        .into_bytes()
                };
                assert_eq!(t.plain(fill), expected);
                assert_eq!(gunzip(&t.gzip(fill)), expected, "{} bytes, fill of {}", text.len(), fill.len());
            }
        }
    }

    #[test]
    fn the_text_is_compressed_as_well_as_in_one_piece() {
        let page = "<script nonce=\"abcdefghijklmnop\"></script>".to_string() + &"<path d=\"M1 2L3 4\"/>".repeat(3000);
        let t = GzipTemplate::new(page.as_bytes(), b"abcdefghijklmnop").unwrap();
        let mut whole = flate2::write::GzEncoder::new(Vec::new(), Compression::best());
        std::io::Write::write_all(&mut whole, page.as_bytes()).unwrap();
        let whole = whole.finish().unwrap();
        let ours = t.gzip(b"qrstuvwxyzabcdef").len();
        assert!(ours < whole.len() + 64, "{ours} against {} in one piece", whole.len());
    }
}
