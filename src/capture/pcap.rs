//! Reading capture files: classic pcap (both byte orders, µs and ns) and pcapng.
//!
//! Hand-written rather than libpcap's `pcap_open_offline`, for three reasons found with real
//! files: libpcap refuses a pcapng whose interfaces have different link types (what
//! `tcpdump -i any` next to a loopback dump, or a merged Wireshark capture, produces); on a
//! file cut short it reports an error without saying how much was good, whereas mf must
//! import everything before the cut and say so; and a reader over `std::io::Read` can be
//! fuzzed and fed from memory. libpcap is still used for what only it does: BPF filters
//! (`--filter`, via `pcap_offline_filter`) and live capture.

use bytes::{Bytes, BytesMut};
use std::io::{self, Read};

/// Why a file cannot be read as a capture.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("not a pcap or pcapng capture (first bytes {0:02x?})")]
    NotACapture(Vec<u8>),
    #[error("reading the capture: {0}")]
    Io(#[from] io::Error),
}

/// One captured packet, borrowed from the reader's buffer until the next call.
#[derive(Debug)]
pub struct Packet<'a> {
    /// The reader's buffer that `data` lies in, when it can be shared: a TCP payload is then
    /// sliced out of it (a reference count) instead of copied.
    pub owner: Option<&'a Bytes>,
    /// Capture time, nanoseconds since the Unix epoch.
    pub ts_ns: i64,
    /// LINKTYPE_* of the interface it was captured on.
    pub linktype: u32,
    /// The captured bytes (possibly fewer than `orig_len` when the snaplen cut it).
    pub data: &'a [u8],
    /// Length on the wire.
    pub orig_len: u32,
}

#[derive(Clone, Copy, Debug)]
enum Format {
    Pcap {
        big_endian: bool,
        nanos: bool,
        linktype: u32,
    },
    PcapNg {
        big_endian: bool,
    },
}

#[derive(Clone, Copy, Debug)]
struct Interface {
    linktype: u32,
    /// Timestamp units: `ts * num / den` nanoseconds.
    units_per_sec: u64,
    offset_s: i64,
}

/// Largest record or block accepted; larger means the file is corrupt (libpcap uses 256 KiB
/// for records; pcapng blocks of jumbo TSO frames stay far below this).
const MAX_BLOCK: usize = 64 * 1024 * 1024;
/// pcapng Decryption Secrets Block (pcapng §4.7) and its TLS key log secrets type ("TLSK").
const DECRYPTION_SECRETS: u32 = 0x0000_000A;
const TLS_KEY_LOG: u32 = 0x544c_534b;
/// Bytes read from the stream at a time. pcap records are handed out in place from this
/// buffer rather than copied into a record buffer (the copy and the zeroing before it were
/// ~3% of an import); reads this large also pass a caller's `BufReader` by (its buffer is
/// bypassed by reads at least its size), so the file's bytes are copied once, by the kernel.
const CHUNK: usize = 2 << 20;

/// Reads packets one by one from a pcap or pcapng stream.
pub struct Reader<R: Read> {
    r: R,
    format: Format,
    interfaces: Vec<Interface>,
    /// Bytes read from `r`: `chunk[pos..end]` are not consumed yet. Shared, so that TCP
    /// payloads can be handed on as slices of it: copying each one out (an allocation and a
    /// copy per packet) was the largest single cost of the parsing thread in an import
    /// profile. It is refilled in place whenever nothing else holds it (the usual case: a
    /// payload is consumed before the next packet is read), else a new one is allocated.
    chunk: Bytes,
    pos: usize,
    end: usize,
    /// The block being read (pcapng).
    buf: Vec<u8>,
    /// Bytes consumed from the stream so far (for progress).
    pub bytes_read: u64,
    /// The stream ended in the middle of a record or block.
    pub truncated: bool,
    /// The stream had a malformed record or block after which reading stopped.
    pub corrupt: Option<String>,
    /// Packets on an interface that was never described (skipped).
    pub unknown_interface: u64,
    /// TLS key log text of Decryption Secrets Blocks read and not yet taken
    /// ([`Reader::take_secrets`]).
    secrets: Vec<Vec<u8>>,
    /// Decryption Secrets Blocks with TLS key logs.
    pub secrets_blocks: u64,
    /// Decryption Secrets Blocks of another kind (WireGuard, SSH…) or malformed: skipped.
    pub other_secrets_blocks: u64,
}

impl<R: Read> Reader<R> {
    /// Reads the file header.
    ///
    /// # Errors
    /// [`Error::NotACapture`] when the magic number is neither pcap nor pcapng.
    pub fn new(mut r: R) -> Result<Self, Error> {
        let mut magic = [0u8; 4];
        let got = read_full(&mut r, &mut magic)?;
        if got < 4 {
            return Err(Error::NotACapture(magic[..got].to_vec()));
        }
        let mut reader = Reader {
            r,
            format: Format::PcapNg { big_endian: false },
            interfaces: Vec::new(),
            chunk: Bytes::from(vec![0; CHUNK]),
            pos: 0,
            end: 0,
            buf: Vec::with_capacity(1 << 16),
            bytes_read: 4,
            truncated: false,
            corrupt: None,
            unknown_interface: 0,
            secrets: Vec::new(),
            secrets_blocks: 0,
            other_secrets_blocks: 0,
        };
        let (big, nanos) = match magic {
            [0xd4, 0xc3, 0xb2, 0xa1] => (false, false),
            [0xa1, 0xb2, 0xc3, 0xd4] => (true, false),
            [0x4d, 0x3c, 0xb2, 0xa1] => (false, true),
            [0xa1, 0xb2, 0x3c, 0x4d] => (true, true),
            [0x0a, 0x0d, 0x0d, 0x0a] => {
                // The section header's own byte-order magic decides the endianness.
                let mut head = [0u8; 8];
                if reader.read_exact_or_eof(&mut head)? < 8 {
                    return Err(Error::NotACapture(magic.to_vec()));
                }
                let big = match &head[4..8] {
                    [0x1a, 0x2b, 0x3c, 0x4d] => true,
                    [0x4d, 0x3c, 0x2b, 0x1a] => false,
                    _ => return Err(Error::NotACapture(magic.to_vec())),
                };
                reader.format = Format::PcapNg { big_endian: big };
                let total = u32_at(&head, 0, big) as usize;
                if !(28..=MAX_BLOCK).contains(&total) || !total.is_multiple_of(4) {
                    return Err(Error::NotACapture(magic.to_vec()));
                }
                // Rest of the section header (version, section length, options): unused.
                let mut rest = vec![0u8; total - 12];
                if reader.read_exact_or_eof(&mut rest)? < rest.len() {
                    reader.truncated = true;
                }
                return Ok(reader);
            }
            _ => return Err(Error::NotACapture(magic.to_vec())),
        };
        let mut head = [0u8; 20];
        if reader.read_exact_or_eof(&mut head)? < 20 {
            return Err(Error::NotACapture(magic.to_vec()));
        }
        // The top bits of the link type carry FCS information (pcap format spec §linktype).
        let linktype = u32_at(&head, 16, big) & 0x03ff_ffff;
        reader.format = Format::Pcap {
            big_endian: big,
            nanos,
            linktype,
        };
        Ok(reader)
    }

    /// The next packet, `Ok(None)` at the end (check [`Reader::truncated`] and
    /// [`Reader::corrupt`]).
    ///
    /// # Errors
    /// I/O errors of the underlying stream.
    pub fn next_packet(&mut self) -> Result<Option<Packet<'_>>, Error> {
        match self.format {
            Format::Pcap {
                big_endian,
                nanos,
                linktype,
            } => self.next_pcap(big_endian, nanos, linktype),
            Format::PcapNg { big_endian } => self.next_pcapng(big_endian),
        }
    }

    fn next_pcap(
        &mut self,
        big: bool,
        nanos: bool,
        linktype: u32,
    ) -> Result<Option<Packet<'_>>, Error> {
        if self.truncated || self.corrupt.is_some() {
            return Ok(None);
        }
        let mut head = [0u8; 16];
        match self.read_exact_or_eof(&mut head)? {
            0 => return Ok(None),
            16 => {}
            _ => {
                self.truncated = true;
                return Ok(None);
            }
        }
        let sec = i64::from(u32_at(&head, 0, big));
        let frac = i64::from(u32_at(&head, 4, big));
        let incl = u32_at(&head, 8, big) as usize;
        let orig_len = u32_at(&head, 12, big);
        if incl > MAX_BLOCK {
            self.corrupt = Some(format!(
                "record of {incl} bytes at offset {}",
                self.bytes_read - 16
            ));
            return Ok(None);
        }
        let got = self.fill(incl)?;
        let start = self.pos;
        self.consume(got);
        if got < incl {
            self.truncated = true;
            return Ok(None);
        }
        let ts_ns = sec * 1_000_000_000 + if nanos { frac } else { frac * 1000 };
        Ok(Some(Packet {
            owner: Some(&self.chunk),
            ts_ns,
            linktype,
            data: &self.chunk[start..start + incl],
            orig_len,
        }))
    }

    fn next_pcapng(&mut self, mut big: bool) -> Result<Option<Packet<'_>>, Error> {
        loop {
            if self.truncated || self.corrupt.is_some() {
                return Ok(None);
            }
            let mut head = [0u8; 8];
            match self.read_exact_or_eof(&mut head)? {
                0 => return Ok(None),
                8 => {}
                _ => {
                    self.truncated = true;
                    return Ok(None);
                }
            }
            let block_type = u32_at(&head, 0, big);
            if block_type == 0x0a0d_0d0a {
                // A new section: its byte order may differ, and interface ids restart.
                let mut bom = [0u8; 4];
                if self.read_exact_or_eof(&mut bom)? < 4 {
                    self.truncated = true;
                    return Ok(None);
                }
                big = match bom {
                    [0x1a, 0x2b, 0x3c, 0x4d] => true,
                    [0x4d, 0x3c, 0x2b, 0x1a] => false,
                    _ => {
                        self.corrupt = Some("section header with a bad byte-order magic".into());
                        return Ok(None);
                    }
                };
                self.format = Format::PcapNg { big_endian: big };
                self.interfaces.clear();
                let total = u32_at(&head, 4, big) as usize;
                if !(28..=MAX_BLOCK).contains(&total) || !total.is_multiple_of(4) {
                    self.corrupt = Some(format!("section header of {total} bytes"));
                    return Ok(None);
                }
                self.buf.resize(total - 12, 0);
                if !self.fill_buf()? {
                    return Ok(None);
                }
                continue;
            }
            let total = u32_at(&head, 4, big) as usize;
            if !(12..=MAX_BLOCK).contains(&total) || !total.is_multiple_of(4) {
                self.corrupt = Some(format!(
                    "block of {total} bytes at offset {}",
                    self.bytes_read - 8
                ));
                return Ok(None);
            }
            self.buf.resize(total - 8, 0);
            if !self.fill_buf()? {
                return Ok(None);
            }
            let body_len = total - 12;
            match block_type {
                1 => {
                    // Interface description: link type, then options (if_tsresol, if_tsoffset).
                    if body_len < 8 {
                        continue;
                    }
                    let linktype = u32::from(u16_at(&self.buf, 0, big));
                    let mut iface = Interface {
                        linktype,
                        units_per_sec: 1_000_000,
                        offset_s: 0,
                    };
                    let mut opts = &self.buf[8..body_len];
                    while opts.len() >= 4 {
                        let code = u16_at(opts, 0, big);
                        let len = usize::from(u16_at(opts, 2, big));
                        let padded = (len + 3) & !3;
                        if opts.len() < 4 + len || code == 0 {
                            break;
                        }
                        let val = &opts[4..4 + len];
                        if code == 9 && len >= 1 {
                            let v = u32::from(val[0] & 0x7f);
                            iface.units_per_sec = if val[0] & 0x80 == 0 {
                                10u64.checked_pow(v).unwrap_or(1_000_000)
                            } else {
                                2u64.checked_pow(v).unwrap_or(1_000_000)
                            };
                        } else if code == 14 && len >= 8 {
                            iface.offset_s = if big {
                                i64::from_be_bytes([
                                    val[0], val[1], val[2], val[3], val[4], val[5], val[6], val[7],
                                ])
                            } else {
                                i64::from_le_bytes([
                                    val[0], val[1], val[2], val[3], val[4], val[5], val[6], val[7],
                                ])
                            };
                        }
                        opts = opts.get(4 + padded..).unwrap_or_default();
                    }
                    self.interfaces.push(iface);
                }
                6 | 2 => {
                    // Enhanced packet block (6) or the obsolete packet block (2).
                    if body_len < 20 {
                        continue;
                    }
                    let iface_id = if block_type == 6 {
                        u32_at(&self.buf, 0, big) as usize
                    } else {
                        usize::from(u16_at(&self.buf, 0, big))
                    };
                    let ts = u64::from(u32_at(&self.buf, 4, big)) << 32
                        | u64::from(u32_at(&self.buf, 8, big));
                    let caplen = (u32_at(&self.buf, 12, big) as usize).min(body_len - 20);
                    let orig_len = u32_at(&self.buf, 16, big);
                    let Some(iface) = self.interfaces.get(iface_id).copied() else {
                        self.unknown_interface += 1;
                        continue;
                    };
                    let ts_ns = ts_to_ns(ts, iface);
                    return Ok(Some(Packet {
                        owner: None,
                        ts_ns,
                        linktype: iface.linktype,
                        data: &self.buf[20..20 + caplen],
                        orig_len,
                    }));
                }
                3 => {
                    // Simple packet block: interface 0, no timestamp.
                    if body_len < 4 {
                        continue;
                    }
                    let orig_len = u32_at(&self.buf, 0, big);
                    let caplen = (orig_len as usize).min(body_len - 4);
                    let Some(iface) = self.interfaces.first().copied() else {
                        self.unknown_interface += 1;
                        continue;
                    };
                    return Ok(Some(Packet {
                        owner: None,
                        ts_ns: 0,
                        linktype: iface.linktype,
                        data: &self.buf[4..4 + caplen],
                        orig_len,
                    }));
                }
                DECRYPTION_SECRETS => {
                    // pcapng §4.7: secrets type, secrets length, the secrets, options.
                    let secrets_type = if body_len >= 8 {
                        u32_at(&self.buf, 0, big)
                    } else {
                        0
                    };
                    let len = if body_len >= 8 {
                        u32_at(&self.buf, 4, big) as usize
                    } else {
                        0
                    };
                    if secrets_type == TLS_KEY_LOG && len <= body_len - 8 {
                        self.secrets.push(self.buf[8..8 + len].to_vec());
                        self.secrets_blocks += 1;
                    } else {
                        self.other_secrets_blocks += 1;
                    }
                }
                // Name resolution, statistics and custom blocks.
                _ => {}
            }
        }
    }

    /// Key log text from the Decryption Secrets Blocks read so far (each block's once).
    pub fn take_secrets(&mut self) -> Vec<Vec<u8>> {
        std::mem::take(&mut self.secrets)
    }

    /// Whether Decryption Secrets Blocks wait to be taken.
    pub fn has_secrets(&self) -> bool {
        !self.secrets.is_empty()
    }

    /// Reads the rest of a block into `self.buf`; false (and `truncated`) at a premature end.
    fn fill_buf(&mut self) -> Result<bool, Error> {
        let mut buf = std::mem::take(&mut self.buf);
        let got = self.read_exact_or_eof(&mut buf)?;
        let complete = got == buf.len();
        self.buf = buf;
        if !complete {
            self.truncated = true;
        }
        Ok(complete)
    }

    fn read_exact_or_eof(&mut self, buf: &mut [u8]) -> Result<usize, Error> {
        let n = self.fill(buf.len())?;
        buf[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
        self.consume(n);
        Ok(n)
    }

    /// Makes the next `n` bytes of the stream (or all that is left, when fewer) contiguous at
    /// `chunk[pos..]`; returns how many there are.
    fn fill(&mut self, n: usize) -> Result<usize, Error> {
        if self.end - self.pos >= n {
            return Ok(n);
        }
        let mut chunk = match std::mem::take(&mut self.chunk).try_into_mut() {
            Ok(mut mine) => {
                mine.copy_within(self.pos..self.end, 0);
                mine
            }
            // A payload handed out earlier still holds it: carry the unread tail over.
            Err(held) => {
                let mut fresh = BytesMut::zeroed(CHUNK.max(n));
                fresh[..self.end - self.pos].copy_from_slice(&held[self.pos..self.end]);
                fresh
            }
        };
        self.end -= self.pos;
        self.pos = 0;
        if chunk.len() < n {
            chunk.resize(n, 0);
        }
        let read = (|| {
            while self.end < n {
                let got = read_some(&mut self.r, &mut chunk[self.end..])?;
                if got == 0 {
                    break;
                }
                self.end += got;
            }
            Ok::<(), Error>(())
        })();
        self.chunk = chunk.freeze();
        read?;
        Ok(n.min(self.end))
    }

    fn consume(&mut self, n: usize) {
        self.pos += n;
        self.bytes_read += n as u64;
    }
}

fn ts_to_ns(ts: u64, iface: Interface) -> i64 {
    let per = iface.units_per_sec.max(1);
    let secs = ts / per;
    let frac = ts % per;
    let ns = u128::from(frac) * 1_000_000_000 / u128::from(per);
    (secs as i64)
        .saturating_add(iface.offset_s)
        .saturating_mul(1_000_000_000)
        .saturating_add(ns as i64)
}

/// One `read`, retried when interrupted; 0 at the end of the stream.
fn read_some(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match r.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            other => return other,
        }
    }
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

fn u32_at(b: &[u8], at: usize, big: bool) -> u32 {
    let a = [b[at], b[at + 1], b[at + 2], b[at + 3]];
    if big {
        u32::from_be_bytes(a)
    } else {
        u32::from_le_bytes(a)
    }
}

fn u16_at(b: &[u8], at: usize, big: bool) -> u16 {
    let a = [b[at], b[at + 1]];
    if big {
        u16::from_be_bytes(a)
    } else {
        u16::from_le_bytes(a)
    }
}

/// Writes classic pcap (µs, little endian): used by tests, the benchmark generator and
/// anyone who wants a file libpcap reads back.
pub struct PcapWriter<W: io::Write> {
    w: W,
}

impl<W: io::Write> PcapWriter<W> {
    /// Writes the file header.
    ///
    /// # Errors
    /// I/O errors.
    pub fn new(mut w: W, linktype: u32) -> io::Result<Self> {
        w.write_all(&0xa1b2_c3d4u32.to_le_bytes())?;
        w.write_all(&2u16.to_le_bytes())?;
        w.write_all(&4u16.to_le_bytes())?;
        w.write_all(&[0; 8])?;
        w.write_all(&262_144u32.to_le_bytes())?;
        w.write_all(&linktype.to_le_bytes())?;
        Ok(PcapWriter { w })
    }

    /// Writes one record.
    ///
    /// # Errors
    /// I/O errors.
    pub fn packet(&mut self, ts_ns: i64, data: &[u8]) -> io::Result<()> {
        let sec = (ts_ns / 1_000_000_000) as u32;
        let usec = ((ts_ns % 1_000_000_000) / 1000) as u32;
        self.w.write_all(&sec.to_le_bytes())?;
        self.w.write_all(&usec.to_le_bytes())?;
        self.w.write_all(&(data.len() as u32).to_le_bytes())?;
        self.w.write_all(&(data.len() as u32).to_le_bytes())?;
        self.w.write_all(data)
    }

    /// The underlying writer.
    pub fn into_inner(self) -> W {
        self.w
    }
}

/// A BPF program compiled by libpcap for one link type (`pcap_offline_filter`).
pub struct BpfHolder(::pcap::BpfProgram);

impl BpfHolder {
    /// Compiles `text` for `linktype`; `Ok(None)` when libpcap does not know the link type.
    ///
    /// # Errors
    /// libpcap's message for an invalid expression.
    pub fn compile(linktype: u32, text: &str) -> Result<Option<Self>, String> {
        let Ok(lt) = i32::try_from(linktype) else {
            return Ok(None);
        };
        let Ok(cap) = ::pcap::Capture::dead(::pcap::Linktype(lt)) else {
            return Ok(None);
        };
        cap.compile(text, true)
            .map(|p| Some(BpfHolder(p)))
            .map_err(|e| e.to_string())
    }

    /// Whether the frame passes the filter.
    pub fn matches(&self, frame: &[u8]) -> bool {
        self.0.filter(frame)
    }
}

#[cfg(test)]
#[path = "pcap_tests.rs"]
mod tests;
