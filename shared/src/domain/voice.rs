//! Voice notes as Telegram wants them: OGG/Opus with a packed 5-bit waveform.
//!
//! Chromium records WebM/Opus only; [`remux_webm_to_ogg`] moves its Opus packets into an
//! OGG stream unchanged (no re-encoding), one frame at a time.

use std::io::{Read, Seek, Write};

use matroska_demuxer::{Frame, MatroskaFile, TrackType};
use ogg::writing::{PacketWriteEndInfo, PacketWriter};

/// Levels of a waveform are 0..=31 (5 bits).
pub const MAX_LEVEL: u8 = 31;
/// Telegram shows at most this many waveform levels.
pub const MAX_LEVELS: usize = 100;

/// Telegram's waveform format: each level in 5 bits, least significant bit first.
pub fn pack_waveform(levels: &[u8]) -> Vec<u8> {
    let mut packed = vec![0u8; (levels.len() * 5).div_ceil(8)];
    for (i, level) in levels.iter().enumerate() {
        let value = u16::from((*level).min(MAX_LEVEL));
        let bit = i * 5;
        let shifted = value << (bit % 8);
        packed[bit / 8] |= shifted as u8;
        if let Some(next) = packed.get_mut(bit / 8 + 1) {
            *next |= (shifted >> 8) as u8;
        }
    }
    packed
}

/// What a voice recording is, from its first bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VoiceContainer {
    Ogg,
    WebM,
}

pub fn sniff_container(head: &[u8]) -> Option<VoiceContainer> {
    if head.starts_with(b"OggS") {
        Some(VoiceContainer::Ogg)
    } else if head.starts_with(&[0x1A, 0x45, 0xDF, 0xA3]) {
        Some(VoiceContainer::WebM)
    } else {
        None
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RemuxError {
    #[error("not a WebM file: {0}")]
    Demux(#[from] matroska_demuxer::DemuxError),
    #[error("the WebM file has no Opus audio track")]
    NoOpus,
    #[error("writing OGG failed: {0}")]
    Io(#[from] std::io::Error),
}

const SERIAL: u32 = 0x4F4C_4354; // "OLCT"
const OPUS_RATE: u64 = 48_000;

/// Remuxes the Opus track of a WebM file into OGG/Opus, frame by frame; the duration in
/// 48 kHz samples.
pub fn remux_webm_to_ogg<R: Read + Seek, W: Write>(input: R, output: W) -> Result<u64, RemuxError> {
    let mut webm = MatroskaFile::open(input)?;
    let track = webm
        .tracks()
        .iter()
        .find(|t| t.track_type() == TrackType::Audio && t.codec_id() == "A_OPUS")
        .ok_or(RemuxError::NoOpus)?;
    let number = track.track_number().get();
    let channels = track.audio().map_or(1, |a| a.channels().get()) as u8;
    let head = match track.codec_private() {
        Some(private) if private.starts_with(b"OpusHead") => private.to_vec(),
        _ => opus_head(channels),
    };
    let mut ogg = PacketWriter::new(output);
    ogg.write_packet(head, SERIAL, PacketWriteEndInfo::EndPage, 0)?;
    ogg.write_packet(opus_tags(), SERIAL, PacketWriteEndInfo::EndPage, 0)?;

    // One frame is held back so the last one can end the stream.
    let mut granule = 0u64;
    let mut pending: Option<Vec<u8>> = None;
    let mut frame = Frame::default();
    while webm.next_frame(&mut frame)? {
        if frame.track != number || frame.data.is_empty() {
            continue;
        }
        if let Some(packet) = pending.replace(std::mem::take(&mut frame.data)) {
            ogg.write_packet(packet, SERIAL, PacketWriteEndInfo::NormalPacket, granule)?;
        }
        granule += packet_samples(pending.as_deref().unwrap_or_default());
    }
    let last = pending.ok_or(RemuxError::NoOpus)?;
    ogg.write_packet(last, SERIAL, PacketWriteEndInfo::EndStream, granule)?;
    ogg.into_inner().flush()?;
    Ok(granule)
}

/// An OGG/Opus voice note of `seconds` of silence (20 ms CELT frames): what the sandbox's
/// clients record.
pub fn silent_ogg(seconds: u32) -> Vec<u8> {
    const SILENT_FRAME: [u8; 3] = [0xF8, 0xFF, 0xFE];
    let frames = seconds.max(1) * 50;
    let mut ogg = PacketWriter::new(Vec::new());
    let write = |ogg: &mut PacketWriter<Vec<u8>>, packet: Vec<u8>, end, granule| ogg.write_packet(packet, SERIAL, end, granule).expect("writing to memory");
    write(&mut ogg, opus_head(1), PacketWriteEndInfo::EndPage, 0);
    write(&mut ogg, opus_tags(), PacketWriteEndInfo::EndPage, 0);
    for frame in 1..=frames {
        let end = if frame == frames { PacketWriteEndInfo::EndStream } else { PacketWriteEndInfo::NormalPacket };
        write(&mut ogg, SILENT_FRAME.to_vec(), end, u64::from(frame) * packet_samples(&SILENT_FRAME));
    }
    ogg.into_inner()
}

/// Samples at 48 kHz in one Opus packet, from its TOC byte (RFC 6716 §3.1).
fn packet_samples(packet: &[u8]) -> u64 {
    let Some(&toc) = packet.first() else { return 0 };
    let config = toc >> 3;
    let per_frame = match config {
        0..=11 => [480, 960, 1920, 2880][usize::from(config % 4)],
        12..=15 => [480, 960][usize::from(config % 2)],
        _ => [120, 240, 480, 960][usize::from(config % 4)],
    };
    let frames = match toc & 3 {
        0 => 1,
        1 | 2 => 2,
        _ => packet.get(1).map_or(0, |b| u64::from(b & 0x3F)),
    };
    per_frame * frames
}

/// An OpusHead (RFC 7845 §5.1) for a WebM file without one: no pre-skip, mapping family 0.
fn opus_head(channels: u8) -> Vec<u8> {
    let mut head = b"OpusHead".to_vec();
    head.push(1);
    head.push(channels.clamp(1, 2));
    head.extend_from_slice(&0u16.to_le_bytes());
    head.extend_from_slice(&(OPUS_RATE as u32).to_le_bytes());
    head.extend_from_slice(&0i16.to_le_bytes());
    head.push(0);
    head
}

fn opus_tags() -> Vec<u8> {
    let vendor = b"olchat";
    let mut tags = b"OpusTags".to_vec();
    tags.extend_from_slice(&(vendor.len() as u32).to_le_bytes());
    tags.extend_from_slice(vendor);
    tags.extend_from_slice(&0u32.to_le_bytes());
    tags
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    #[test]
    fn waveform_packs_five_bits_each_lsb_first() {
        assert_eq!(pack_waveform(&[]), Vec::<u8>::new());
        assert_eq!(pack_waveform(&[31]), [0b0001_1111]);
        // 31 | 1<<5 = 0b0011_1111; the second level's upper bits spill into byte 1.
        assert_eq!(pack_waveform(&[31, 1]), [0b0011_1111, 0]);
        assert_eq!(pack_waveform(&[0, 31]), [0b1110_0000, 0b0000_0011]);
        assert_eq!(pack_waveform(&[200]), [31], "levels are clamped to 31");
        assert_eq!(pack_waveform(&[31; 100]).len(), 63);
    }

    #[test]
    fn waveform_round_trips() {
        let levels: Vec<u8> = (0..100).map(|i| (i * 7 % 32) as u8).collect();
        let packed = pack_waveform(&levels);
        let unpacked: Vec<u8> = (0..levels.len())
            .map(|i| {
                let bit = i * 5;
                let word = u16::from(packed[bit / 8]) | packed.get(bit / 8 + 1).map_or(0, |b| u16::from(*b) << 8);
                ((word >> (bit % 8)) & 31) as u8
            })
            .collect();
        assert_eq!(unpacked, levels);
    }

    #[test]
    fn opus_packet_durations() {
        assert_eq!(packet_samples(&[31 << 3]), 960, "CELT 20 ms");
        assert_eq!(packet_samples(&[(1 << 3) | 1]), 1920, "SILK 20 ms, two frames");
        assert_eq!(packet_samples(&[(16 << 3) | 3, 0x04]), 480, "CELT 2.5 ms, four frames");
        assert_eq!(packet_samples(&[]), 0);
    }

    #[test]
    fn sniffs_containers() {
        assert_eq!(sniff_container(b"OggS\0\x02"), Some(VoiceContainer::Ogg));
        assert_eq!(sniff_container(&[0x1A, 0x45, 0xDF, 0xA3, 1]), Some(VoiceContainer::WebM));
        assert_eq!(sniff_container(b"RIFF"), None);
    }

    /// A minimal WebM: EBML header, Segment (unknown size, as Chromium writes it) with
    /// Info, one Opus track and a Cluster of SimpleBlocks.
    fn webm(packets: &[&[u8]]) -> Vec<u8> {
        fn el(id: &[u8], body: &[u8]) -> Vec<u8> {
            let mut out = id.to_vec();
            out.push(0x01); // an 8-byte size
            out.extend_from_slice(&(body.len() as u64).to_be_bytes()[1..]);
            out.extend_from_slice(body);
            out
        }
        let uint = |id: &[u8], v: u64| el(id, &v.to_be_bytes());
        let header = [
            uint(&[0x42, 0x86], 1), uint(&[0x42, 0xF7], 1), uint(&[0x42, 0xF2], 4), uint(&[0x42, 0xF3], 8),
            el(&[0x42, 0x82], b"webm"), uint(&[0x42, 0x87], 4), uint(&[0x42, 0x85], 2),
        ]
        .concat();
        let info = el(&[0x15, 0x49, 0xA9, 0x66], &[uint(&[0x2A, 0xD7, 0xB1], 1_000_000), el(&[0x4D, 0x80], b"t"), el(&[0x57, 0x41], b"t")].concat());
        let audio = el(&[0xE1], &[el(&[0xB5], &48_000f64.to_be_bytes()), uint(&[0x9F], 1)].concat());
        let entry = el(
            &[0xAE],
            &[uint(&[0xD7], 1), uint(&[0x73, 0xC5], 1), uint(&[0x83], 2), el(&[0x86], b"A_OPUS"), el(&[0x63, 0xA2], &opus_head(1)), audio].concat(),
        );
        let tracks = el(&[0x16, 0x54, 0xAE, 0x6B], &entry);
        let mut cluster = uint(&[0xE7], 0);
        for (i, p) in packets.iter().enumerate() {
            let mut block = vec![0x81];
            block.extend_from_slice(&((i as i16) * 20).to_be_bytes());
            block.push(0x80);
            block.extend_from_slice(p);
            cluster.extend(el(&[0xA3], &block));
        }
        let cluster = el(&[0x1F, 0x43, 0xB6, 0x75], &cluster);
        let mut segment = vec![0x18, 0x53, 0x80, 0x67, 0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF];
        segment.extend([info, tracks, cluster].concat());
        [el(&[0x1A, 0x45, 0xDF, 0xA3], &header), segment].concat()
    }

    #[test]
    fn remuxes_webm_opus_packets_into_ogg_unchanged() {
        let packets: [&[u8]; 3] = [&[0xF8, 1, 2, 3], &[0xF8, 4, 5], &[0xF8, 6]]; // CELT 20 ms each
        let mut out = Vec::new();
        let samples = remux_webm_to_ogg(Cursor::new(webm(&packets)), &mut out).expect("remuxes");
        assert_eq!(samples, 3 * 960);
        assert_eq!(sniff_container(&out), Some(VoiceContainer::Ogg));

        let mut reader = ogg::PacketReader::new(Cursor::new(out));
        let head = reader.read_packet_expected().unwrap();
        assert!(head.data.starts_with(b"OpusHead"));
        assert!(reader.read_packet_expected().unwrap().data.starts_with(b"OpusTags"));
        let mut audio = Vec::new();
        while let Some(p) = reader.read_packet().unwrap() {
            audio.push((p.absgp_page(), p.last_in_stream(), p.data));
        }
        assert_eq!(audio.iter().map(|a| a.2.as_slice()).collect::<Vec<_>>(), packets);
        let last = audio.last().unwrap();
        assert!(last.1, "the last packet ends the stream");
        assert_eq!(last.0, 3 * 960, "the final granule position is the duration");
    }

    #[test]
    fn silence_is_a_whole_ogg_opus_stream() {
        let mut reader = ogg::PacketReader::new(Cursor::new(silent_ogg(2)));
        assert!(reader.read_packet_expected().unwrap().data.starts_with(b"OpusHead"));
        assert!(reader.read_packet_expected().unwrap().data.starts_with(b"OpusTags"));
        let mut last = None;
        let mut count = 0;
        while let Some(p) = reader.read_packet().unwrap() {
            count += 1;
            last = Some((p.absgp_page(), p.last_in_stream()));
        }
        assert_eq!(count, 100);
        assert_eq!(last, Some((2 * 48_000, true)), "two seconds, and the stream ends");
    }

    #[test]
    fn refuses_what_is_not_webm_opus() {
        assert!(remux_webm_to_ogg(Cursor::new(b"not a webm".to_vec()), Vec::new()).is_err());
        assert!(matches!(remux_webm_to_ogg(Cursor::new(webm(&[])), Vec::new()), Err(RemuxError::NoOpus)));
    }
}
