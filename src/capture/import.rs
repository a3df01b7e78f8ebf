//! `mf import`: a capture file through the packet decoder and the passive engine.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;

use super::packet::{PacketDecoder, Skip};
use super::passive::Engine;
use super::pcap::{self, Reader};

/// Errors of a BPF filter (compiled by libpcap).
#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    #[error("invalid filter {filter:?}: {message}")]
    Invalid { filter: String, message: String },
}

/// A BPF filter compiled per link type on first use (a pcapng may mix link types).
pub struct Filter {
    text: String,
    programs: HashMap<u32, Option<pcap::BpfHolder>>,
}

impl Filter {
    /// Checks that `text` compiles (for Ethernet) so that typos fail before any work.
    ///
    /// # Errors
    /// libpcap's message for an invalid expression.
    pub fn new(text: &str) -> Result<Self, FilterError> {
        let mut f = Filter {
            text: text.to_string(),
            programs: HashMap::new(),
        };
        f.program(super::packet::linktype::ETHERNET)?;
        Ok(f)
    }

    fn program(&mut self, linktype: u32) -> Result<Option<&pcap::BpfHolder>, FilterError> {
        if !self.programs.contains_key(&linktype) {
            let compiled = pcap::BpfHolder::compile(linktype, &self.text).map_err(|message| {
                FilterError::Invalid {
                    filter: self.text.clone(),
                    message,
                }
            })?;
            self.programs.insert(linktype, compiled);
        }
        Ok(self.programs.get(&linktype).and_then(Option::as_ref))
    }

    /// Whether the frame passes (frames of link types libpcap cannot filter pass).
    pub fn matches(&mut self, linktype: u32, frame: &[u8]) -> bool {
        match self.program(linktype) {
            Ok(Some(p)) => p.matches(frame),
            _ => true,
        }
    }
}

/// mimalloc's option number of `mi_option_purge_delay` (its `mi_option_e` enum in
/// mimalloc.h, v3; the crate names no constant for it).
const MI_OPTION_PURGE_DELAY: std::os::raw::c_int = 15;

/// Tells the allocator never to give freed memory back to the system during the import.
///
/// By default mimalloc returns pages idle for a second, and the import takes them again a
/// moment later: the kernel zeroing them showed as 4-5% of the parsing thread. An import's
/// memory is bounded (writer queue, flow limits), so keeping what it freed costs no more
/// than the peak it already reached; the process ends with the import. The recording proxy
/// keeps the default: there memory should go back after a burst.
fn keep_freed_memory() {
    // SAFETY: `mi_option_set` stores an option value; it may be called at any time from any
    // thread, and only changes when mimalloc purges (it does nothing when mimalloc is not the
    // global allocator, as in unit tests).
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
}

/// What an import read, beside what the engine decoded.
#[derive(Clone, Debug, Default)]
pub struct ImportReport {
    pub packets: u64,
    pub bytes: u64,
    pub filtered_out: u64,
    pub not_tcp: u64,
    pub malformed: u64,
    pub fragments_dropped: u64,
    /// Packets taken out of VXLAN or GENEVE (cloud traffic mirroring).
    pub decapsulated: u64,
    pub unknown_linktypes: BTreeMap<u32, u64>,
    pub unknown_interface: u64,
    /// The file ended in the middle of a record.
    pub truncated: bool,
    /// A malformed record or block stopped the read.
    pub corrupt: Option<String>,
    /// pcapng Decryption Secrets Blocks whose TLS key log went to the engine.
    pub secrets_blocks: u64,
    /// Decryption Secrets Blocks of another kind, or malformed (skipped).
    pub other_secrets_blocks: u64,
}

/// Reads every packet of `input` into `engine` (without finishing it, so several files can
/// make one recording). `progress` receives the bytes read so far, every few hundred packets.
///
/// # Errors
/// [`pcap::Error::NotACapture`] for a file that is not pcap/pcapng; I/O errors.
pub fn import<R: Read>(
    input: R,
    engine: &mut Engine,
    mut filter: Option<&mut Filter>,
    progress: &mut dyn FnMut(u64, &Engine),
) -> Result<ImportReport, pcap::Error> {
    keep_freed_memory();
    let mut reader = Reader::new(input)?;
    let mut decoder = PacketDecoder::new();
    let mut report = ImportReport::default();
    loop {
        if reader.has_secrets() {
            // Secrets embedded in the capture (pcapng §4.7): flows waiting for them resume.
            for text in reader.take_secrets() {
                engine.add_key_log(&text);
            }
        }
        let Some(packet) = reader.next_packet()? else {
            break;
        };
        report.packets += 1;
        report.bytes += packet.data.len() as u64;
        if let Some(f) = filter.as_deref_mut() {
            if !f.matches(packet.linktype, packet.data) {
                report.filtered_out += 1;
                continue;
            }
        }
        match decoder.decode_in(packet.ts_ns, packet.linktype, packet.data, packet.owner) {
            Ok(seg) => engine.segment(seg),
            Err(Skip::NotTcp) | Err(Skip::Fragment) => report.not_tcp += 1,
            Err(Skip::Malformed) => report.malformed += 1,
            Err(Skip::UnknownLinkType(lt)) => *report.unknown_linktypes.entry(lt).or_default() += 1,
        }
        if report.packets % 512 == 0 {
            progress(reader.bytes_read, engine);
        }
    }
    for text in reader.take_secrets() {
        engine.add_key_log(&text);
    }
    progress(reader.bytes_read, engine);
    report.secrets_blocks = reader.secrets_blocks;
    report.other_secrets_blocks = reader.other_secrets_blocks;
    report.truncated = reader.truncated;
    report.corrupt = reader.corrupt.clone();
    report.unknown_interface = reader.unknown_interface;
    report.fragments_dropped = decoder.fragments_incomplete();
    report.decapsulated = decoder.decapsulated;
    Ok(report)
}
