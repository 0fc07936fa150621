//! The index on disk: two Apache Parquet files per capture file, `NAME.flows.parquet` (a row
//! per flow) and `NAME.blocks.parquet` (a row per block), written with Parquet's column API (no
//! Arrow) and zstd. The README documents every column; the schemas below are the source.
//!
//! Both files carry key-value metadata: `tap.index.version` ([`VERSION`]), `tap.capture.file`
//! (the capture file's name), `tap.capture.bytes` (its length when indexed: a different length
//! means the index is stale), `tap.capture.compression` (`none` or `zstd`), `tap.packets`,
//! `tap.flows`, and `tap.first_ns` / `tap.last_ns` (time span of the packets, ns since the
//! epoch), so a reader can choose files by time from the footer alone.

use std::{
    collections::HashMap,
    net::{Ipv4Addr, Ipv6Addr},
    sync::Arc,
};

use bytes::Bytes;
use parquet::{
    basic::{Compression, Encoding, ZstdLevel},
    column::{reader::ColumnReader, writer::ColumnWriter},
    data_type::ByteArray,
    file::{
        metadata::KeyValue,
        properties::{EnabledStatistics, WriterProperties},
        reader::{FileReader, SerializedFileReader},
        writer::SerializedFileWriter,
    },
    schema::{parser::parse_message_type, types::ColumnPath},
};
use tap_common::event::{
    TUNNEL_ERSPAN2, TUNNEL_ERSPAN3, TUNNEL_GENEVE, TUNNEL_GRE, TUNNEL_NONE, TUNNEL_VXLAN,
};

use super::{
    community,
    flow::{self, FAMILY_L2, FAMILY_V4, FAMILY_V6, FlowKey},
    index::{Block, BlockKind, FileIndex, Flow},
};

/// Version of the index layout; a reader refuses (and reindexing replaces) any other.
pub const VERSION: &str = "1";

/// Errors reading or writing an index file.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("{what}")]
    Invalid { what: String },
}

fn invalid(what: impl Into<String>) -> TableError {
    TableError::Invalid { what: what.into() }
}

/// Schema of `NAME.flows.parquet`.
pub const FLOWS_SCHEMA: &str = "
message tap_flow {
  required binary file (STRING);
  optional binary community_id (STRING);
  optional int32 ip_version;
  optional int32 protocol;
  required int32 ethertype;
  required binary src (STRING);
  required binary dst (STRING);
  optional int32 src_port;
  optional int32 dst_port;
  optional int32 icmp_type;
  optional int32 icmp_code;
  optional int32 vlan;
  optional int32 inner_vlan;
  optional binary tunnel (STRING);
  optional int64 tunnel_id;
  required int32 flags;
  required int64 first_ts (TIMESTAMP(NANOS, true));
  required int64 last_ts (TIMESTAMP(NANOS, true));
  required int64 packets;
  required int64 bytes;
  required int64 src_packets;
  required int64 src_bytes;
  required int64 dst_packets;
  required int64 dst_bytes;
  required group block_offsets (LIST) {
    repeated group list {
      required int64 element;
    }
  }
  required group block_runs (LIST) {
    repeated group list {
      required int32 element;
    }
  }
}";

/// The columns a query reads of `NAME.flows.parquet`: all but `block_offsets` (the runs say
/// the same, for a fraction of the decoding).
const FLOWS_READ_SCHEMA: &str = "
message tap_flow {
  required binary file (STRING);
  optional binary community_id (STRING);
  optional int32 ip_version;
  optional int32 protocol;
  required int32 ethertype;
  required binary src (STRING);
  required binary dst (STRING);
  optional int32 src_port;
  optional int32 dst_port;
  optional int32 icmp_type;
  optional int32 icmp_code;
  optional int32 vlan;
  optional int32 inner_vlan;
  optional binary tunnel (STRING);
  optional int64 tunnel_id;
  required int32 flags;
  required int64 first_ts (TIMESTAMP(NANOS, true));
  required int64 last_ts (TIMESTAMP(NANOS, true));
  required int64 packets;
  required int64 bytes;
  required int64 src_packets;
  required int64 src_bytes;
  required int64 dst_packets;
  required int64 dst_bytes;
  required group block_runs (LIST) {
    repeated group list {
      required int32 element;
    }
  }
}";

/// Runs of consecutive block ordinals: (first, count).
#[must_use]
pub fn runs(ordinals: &[u32]) -> Vec<(u32, u32)> {
    let mut out: Vec<(u32, u32)> = Vec::new();
    for &o in ordinals {
        match out.last_mut() {
            Some((first, n)) if *first + *n == o => *n += 1,
            _ => out.push((o, 1)),
        }
    }
    out
}

/// Schema of `NAME.blocks.parquet`.
pub const BLOCKS_SCHEMA: &str = "
message tap_block {
  required binary file (STRING);
  required int64 offset;
  required int64 length;
  required int64 raw_length;
  required binary kind (STRING);
  required int64 packets;
  optional int64 first_ts (TIMESTAMP(NANOS, true));
  optional int64 last_ts (TIMESTAMP(NANOS, true));
  required int32 interfaces;
}";

/// What the footers say about the capture file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Meta {
    /// The capture file's name (no directory).
    pub file: String,
    /// Its length in bytes when indexed.
    pub bytes: u64,
    pub compressed: bool,
    pub packets: u64,
    pub flows: u64,
    /// Time span of its packets, ns since the epoch (0 without packets).
    pub first_ns: u64,
    pub last_ns: u64,
}

impl Meta {
    fn to_kv(&self) -> Vec<KeyValue> {
        let kv = |k: &str, v: String| KeyValue::new(k.to_string(), v);
        vec![
            kv("tap.index.version", VERSION.to_string()),
            kv("tap.capture.file", self.file.clone()),
            kv("tap.capture.bytes", self.bytes.to_string()),
            kv(
                "tap.capture.compression",
                if self.compressed { "zstd" } else { "none" }.to_string(),
            ),
            kv("tap.packets", self.packets.to_string()),
            kv("tap.flows", self.flows.to_string()),
            kv("tap.first_ns", self.first_ns.to_string()),
            kv("tap.last_ns", self.last_ns.to_string()),
        ]
    }

    fn from_kv(kv: Option<&Vec<KeyValue>>) -> Result<Self, TableError> {
        let map: HashMap<&str, &str> = kv
            .map(|v| {
                v.iter()
                    .filter_map(|k| Some((k.key.as_str(), k.value.as_deref()?)))
                    .collect()
            })
            .unwrap_or_default();
        match map.get("tap.index.version") {
            Some(&VERSION) => {}
            Some(v) => {
                return Err(invalid(format!(
                    "index version {v}, this tap reads {VERSION}"
                )));
            }
            None => return Err(invalid("not a tap index (no tap.index.version)")),
        }
        let num = |k: &str| -> Result<u64, TableError> {
            map.get(k)
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| invalid(format!("{k} missing or not a number")))
        };
        Ok(Self {
            file: map
                .get("tap.capture.file")
                .ok_or_else(|| invalid("tap.capture.file missing"))?
                .to_string(),
            bytes: num("tap.capture.bytes")?,
            compressed: map.get("tap.capture.compression") == Some(&"zstd"),
            packets: num("tap.packets")?,
            flows: num("tap.flows")?,
            first_ns: num("tap.first_ns")?,
            last_ns: num("tap.last_ns")?,
        })
    }
}

/// Name of a tunnel kind in the `tunnel` column.
#[must_use]
pub fn tunnel_name(kind: u8) -> Option<&'static str> {
    match kind {
        TUNNEL_VXLAN => Some("vxlan"),
        TUNNEL_GENEVE => Some("geneve"),
        TUNNEL_GRE => Some("gre"),
        TUNNEL_ERSPAN2 => Some("erspan-ii"),
        TUNNEL_ERSPAN3 => Some("erspan-iii"),
        _ => None,
    }
}

fn tunnel_kind(name: &str) -> Option<u8> {
    [
        TUNNEL_VXLAN,
        TUNNEL_GENEVE,
        TUNNEL_GRE,
        TUNNEL_ERSPAN2,
        TUNNEL_ERSPAN3,
    ]
    .into_iter()
    .find(|&k| tunnel_name(k) == Some(name))
}

/// An address of a key as text: IPv4, IPv6 (RFC 5952), or a MAC address.
#[must_use]
pub fn addr_text(family: u8, a: &[u8; 16]) -> String {
    match family {
        FAMILY_V4 => Ipv4Addr::new(a[0], a[1], a[2], a[3]).to_string(),
        FAMILY_V6 => Ipv6Addr::from(*a).to_string(),
        _ => format!(
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            a[0], a[1], a[2], a[3], a[4], a[5]
        ),
    }
}

fn parse_addr(family: u8, s: &str) -> Option<[u8; 16]> {
    let mut out = [0u8; 16];
    match family {
        FAMILY_V4 => out[..4].copy_from_slice(&s.parse::<Ipv4Addr>().ok()?.octets()),
        FAMILY_V6 => out = s.parse::<Ipv6Addr>().ok()?.octets(),
        _ => {
            let parts: Vec<u8> = s
                .split(':')
                .map(|p| u8::from_str_radix(p, 16).ok())
                .collect::<Option<_>>()?;
            if parts.len() != 6 {
                return None;
            }
            out[..6].copy_from_slice(&parts);
        }
    }
    Some(out)
}

/// A flow as its row says it: the key's endpoints in the order of the file's first packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowRow {
    pub key: FlowKey,
    /// The first packet went from `key.a` to `key.b`.
    pub first_forward: bool,
    pub community_id: Option<String>,
    pub first_ns: u64,
    pub last_ns: u64,
    /// Sent by `src` (`[0]`) and by `dst` (`[1]`): packets and wire bytes.
    pub packets: [u64; 2],
    pub bytes: [u64; 2],
    /// The blocks holding its packets, as runs of ordinals into the file's blocks: (first,
    /// count), ascending.
    pub block_runs: Vec<(u32, u32)>,
}

impl FlowRow {
    /// The endpoints as (src, src port, dst, dst port): the file's first packet's direction.
    #[must_use]
    pub fn endpoints(&self) -> ([u8; 16], u16, [u8; 16], u16) {
        let k = &self.key;
        if self.first_forward {
            (k.a, k.port_a, k.b, k.port_b)
        } else {
            (k.b, k.port_b, k.a, k.port_a)
        }
    }
}

fn props(meta: &Meta, list_col: Option<&str>) -> Arc<WriterProperties> {
    let mut b = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).unwrap_or_default()))
        .set_statistics_enabled(EnabledStatistics::Chunk)
        .set_created_by(format!("tap {}", env!("CARGO_PKG_VERSION")))
        .set_key_value_metadata(Some(meta.to_kv()));
    if let Some(c) = list_col {
        let path = ColumnPath::from(vec![c.to_string(), "list".into(), "element".into()]);
        b = b
            .set_column_dictionary_enabled(path.clone(), false)
            .set_column_encoding(path, Encoding::DELTA_BINARY_PACKED);
    }
    Arc::new(b.build())
}

/// One column's values for the writer.
enum Col {
    Str(Vec<ByteArray>),
    OptStr(Vec<Option<ByteArray>>),
    I32(Vec<i32>),
    OptI32(Vec<Option<i32>>),
    I64(Vec<i64>),
    OptI64(Vec<Option<i64>>),
    /// A list of int64 per row.
    ListI64(Vec<Vec<i64>>),
    /// A list of int32 per row.
    ListI32(Vec<Vec<i32>>),
}

fn write_col(w: &mut ColumnWriter<'_>, col: &Col) -> Result<(), TableError> {
    fn split<T: Clone>(v: &[Option<T>]) -> (Vec<T>, Vec<i16>) {
        let defs = v.iter().map(|x| i16::from(x.is_some())).collect();
        (v.iter().flatten().cloned().collect(), defs)
    }
    match (w, col) {
        (ColumnWriter::ByteArrayColumnWriter(w), Col::Str(v)) => {
            w.write_batch(v, None, None)?;
        }
        (ColumnWriter::ByteArrayColumnWriter(w), Col::OptStr(v)) => {
            let (vals, defs) = split(v);
            w.write_batch(&vals, Some(&defs), None)?;
        }
        (ColumnWriter::Int32ColumnWriter(w), Col::I32(v)) => {
            w.write_batch(v, None, None)?;
        }
        (ColumnWriter::Int32ColumnWriter(w), Col::OptI32(v)) => {
            let (vals, defs) = split(v);
            w.write_batch(&vals, Some(&defs), None)?;
        }
        (ColumnWriter::Int64ColumnWriter(w), Col::I64(v)) => {
            w.write_batch(v, None, None)?;
        }
        (ColumnWriter::Int64ColumnWriter(w), Col::OptI64(v)) => {
            let (vals, defs) = split(v);
            w.write_batch(&vals, Some(&defs), None)?;
        }
        (ColumnWriter::Int64ColumnWriter(w), Col::ListI64(rows)) => {
            let (mut vals, mut defs, mut reps) = (Vec::new(), Vec::new(), Vec::new());
            for r in rows {
                if r.is_empty() {
                    defs.push(0);
                    reps.push(0);
                }
                for (i, &v) in r.iter().enumerate() {
                    vals.push(v);
                    defs.push(1);
                    reps.push(i16::from(i > 0));
                }
            }
            w.write_batch(&vals, Some(&defs), Some(&reps))?;
        }
        (ColumnWriter::Int32ColumnWriter(w), Col::ListI32(rows)) => {
            let (mut vals, mut defs, mut reps) = (Vec::new(), Vec::new(), Vec::new());
            for r in rows {
                if r.is_empty() {
                    defs.push(0);
                    reps.push(0);
                }
                for (i, &v) in r.iter().enumerate() {
                    vals.push(v);
                    defs.push(1);
                    reps.push(i16::from(i > 0));
                }
            }
            w.write_batch(&vals, Some(&defs), Some(&reps))?;
        }
        _ => return Err(invalid("column type does not match the schema")),
    }
    Ok(())
}

fn write_file(
    schema: &str,
    props: Arc<WriterProperties>,
    cols: &[Col],
) -> Result<Vec<u8>, TableError> {
    let schema = Arc::new(parse_message_type(schema)?);
    let mut out = Vec::new();
    let mut w = SerializedFileWriter::new(&mut out, schema, props)?;
    let mut rg = w.next_row_group()?;
    let mut cols = cols.iter();
    while let Some(mut c) = rg.next_column()? {
        let col = cols
            .next()
            .ok_or_else(|| invalid("fewer columns than the schema"))?;
        write_col(c.untyped(), col)?;
        c.close()?;
    }
    rg.close()?;
    w.close()?;
    Ok(out)
}

fn ts(ns: u64) -> i64 {
    i64::try_from(ns).unwrap_or(i64::MAX)
}

fn count(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The two index files of `index`, for capture file `meta.file`: (flows, blocks) bytes.
///
/// # Errors
///
/// When a file cannot be read or written, or holds what it should not (the error says which).
#[expect(
    clippy::too_many_lines,
    reason = "one column after the other, in schema order"
)]
pub fn encode(index: &FileIndex, meta: &Meta) -> Result<(Vec<u8>, Vec<u8>), TableError> {
    let mut flows: Vec<&Flow> = index.flows.iter().collect();
    flows.sort_by_key(|f| (f.first_ns, f.key));
    let n = flows.len();
    let file = ByteArray::from(meta.file.as_str());
    let mut c_file = Vec::with_capacity(n);
    let (mut cid, mut ipv, mut proto, mut ethertype) = (vec![], vec![], vec![], vec![]);
    let (mut src, mut dst, mut sport, mut dport) = (vec![], vec![], vec![], vec![]);
    let (mut ity, mut icode, mut vlan, mut ivlan, mut tun, mut tid, mut flags) =
        (vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
    let (mut first, mut last, mut pk, mut by) = (vec![], vec![], vec![], vec![]);
    let (mut spk, mut sby, mut dpk, mut dby, mut offs) = (vec![], vec![], vec![], vec![], vec![]);
    let mut block_runs: Vec<Vec<i32>> = Vec::with_capacity(n);
    for f in &flows {
        let k = &f.key;
        let (a, pa, b, pb) = if f.first_forward {
            (&k.a, k.port_a, &k.b, k.port_b)
        } else {
            (&k.b, k.port_b, &k.a, k.port_a)
        };
        let (s_i, d_i) = if f.first_forward { (0, 1) } else { (1, 0) };
        c_file.push(file.clone());
        cid.push(k.community_id().map(|c| ByteArray::from(c.as_str())));
        let ip = k.family != FAMILY_L2;
        ipv.push(ip.then_some(i32::from(k.family)));
        proto.push(ip.then_some(i32::from(k.proto)));
        ethertype.push(i32::from(k.ethertype));
        src.push(ByteArray::from(addr_text(k.family, a).as_str()));
        dst.push(ByteArray::from(addr_text(k.family, b).as_str()));
        sport.push(k.has_ports().then_some(i32::from(pa)));
        dport.push(k.has_ports().then_some(i32::from(pb)));
        ity.push(k.has_icmp().then_some(i32::from(pa)));
        icode.push((k.has_icmp() && k.one_way).then_some(i32::from(pb)));
        vlan.push((k.vlans >= 1).then_some(i32::from(k.vlan[0])));
        ivlan.push((k.vlans >= 2).then_some(i32::from(k.vlan[1])));
        tun.push(tunnel_name(k.tunnel).map(ByteArray::from));
        tid.push((k.tunnel != TUNNEL_NONE).then_some(i64::from(k.tunnel_id)));
        flags.push(i32::from(k.flags));
        first.push(ts(f.first_ns));
        last.push(ts(f.last_ns));
        pk.push(count(f.packets[0] + f.packets[1]));
        by.push(count(f.bytes[0] + f.bytes[1]));
        spk.push(count(f.packets[s_i]));
        sby.push(count(f.bytes[s_i]));
        dpk.push(count(f.packets[d_i]));
        dby.push(count(f.bytes[d_i]));
        offs.push(
            f.blocks
                .iter()
                .filter_map(|&b| index.blocks.get(b as usize))
                .map(|b| count(b.offset))
                .collect(),
        );
        block_runs.push(
            runs(&f.blocks)
                .into_iter()
                .flat_map(|(a, n)| {
                    [
                        i32::try_from(a).unwrap_or(i32::MAX),
                        i32::try_from(n).unwrap_or(i32::MAX),
                    ]
                })
                .collect(),
        );
    }
    let flow_cols = [
        Col::Str(c_file),
        Col::OptStr(cid),
        Col::OptI32(ipv),
        Col::OptI32(proto),
        Col::I32(ethertype),
        Col::Str(src),
        Col::Str(dst),
        Col::OptI32(sport),
        Col::OptI32(dport),
        Col::OptI32(ity),
        Col::OptI32(icode),
        Col::OptI32(vlan),
        Col::OptI32(ivlan),
        Col::OptStr(tun),
        Col::OptI64(tid),
        Col::I32(flags),
        Col::I64(first),
        Col::I64(last),
        Col::I64(pk),
        Col::I64(by),
        Col::I64(spk),
        Col::I64(sby),
        Col::I64(dpk),
        Col::I64(dby),
        Col::ListI64(offs),
        Col::ListI32(block_runs),
    ];
    let flows_bytes = write_file(FLOWS_SCHEMA, props(meta, Some("block_offsets")), &flow_cols)?;

    let bl = &index.blocks;
    let block_cols = [
        Col::Str(vec![file; bl.len()]),
        Col::I64(bl.iter().map(|b| count(b.offset)).collect()),
        Col::I64(bl.iter().map(|b| count(b.len)).collect()),
        Col::I64(bl.iter().map(|b| count(b.raw_len)).collect()),
        Col::Str(bl.iter().map(|b| ByteArray::from(b.kind.name())).collect()),
        Col::I64(bl.iter().map(|b| count(b.packets)).collect()),
        Col::OptI64(
            bl.iter()
                .map(|b| (b.packets > 0).then(|| ts(b.first_ns)))
                .collect(),
        ),
        Col::OptI64(
            bl.iter()
                .map(|b| (b.packets > 0).then(|| ts(b.last_ns)))
                .collect(),
        ),
        Col::I32(
            bl.iter()
                .map(|b| i32::try_from(b.interfaces).unwrap_or(i32::MAX))
                .collect(),
        ),
    ];
    let blocks_bytes = write_file(BLOCKS_SCHEMA, props(meta, None), &block_cols)?;
    Ok((flows_bytes, blocks_bytes))
}

/// A column read back: values with their definition levels.
struct Read<T> {
    vals: Vec<T>,
    defs: Vec<i16>,
}

fn read_col<T: parquet::data_type::DataType>(
    reader: ColumnReader,
    rows: usize,
) -> Result<Read<T::T>, TableError>
where
    T::T: Default + Clone,
{
    let mut r = parquet::column::reader::get_typed_column_reader::<T>(reader);
    let (mut vals, mut defs, mut reps) = (Vec::new(), Vec::new(), Vec::new());
    let mut done = 0;
    while done < rows {
        let (records, _, _) =
            r.read_records(rows - done, Some(&mut defs), Some(&mut reps), &mut vals)?;
        if records == 0 {
            break;
        }
        done += records;
    }
    if done != rows {
        return Err(invalid(format!("a column holds {done} of {rows} rows")));
    }
    Ok(Read { vals, defs })
}

/// Values of an optional column spread back over its rows.
fn spread<T: Clone>(r: Read<T>, rows: usize) -> Result<Vec<Option<T>>, TableError> {
    if r.defs.is_empty() {
        if r.vals.len() != rows {
            return Err(invalid("a column has the wrong number of values"));
        }
        return Ok(r.vals.into_iter().map(Some).collect());
    }
    if r.defs.len() != rows {
        return Err(invalid("a column has the wrong number of levels"));
    }
    let mut vals = r.vals.into_iter();
    r.defs
        .iter()
        .map(|&d| {
            if d > 0 {
                vals.next()
                    .map(Some)
                    .ok_or_else(|| invalid("fewer values than levels"))
            } else {
                Ok(None)
            }
        })
        .collect()
}

/// Opens a Parquet file held in memory and checks its metadata.
fn open(bytes: Bytes) -> Result<(SerializedFileReader<Bytes>, Meta), TableError> {
    let reader = SerializedFileReader::new(bytes)?;
    let meta = Meta::from_kv(reader.metadata().file_metadata().key_value_metadata())?;
    Ok((reader, meta))
}

/// The metadata of an index file (the footer only).
///
/// # Errors
///
/// When a file cannot be read or written, or holds what it should not (the error says which).
pub fn read_meta(bytes: Bytes) -> Result<Meta, TableError> {
    open(bytes).map(|(_, m)| m)
}

/// Columns of `reader` by name, for every row group in turn.
fn columns(
    reader: &SerializedFileReader<Bytes>,
    schema: &str,
) -> Result<Vec<(usize, Vec<ColumnReader>)>, TableError> {
    let want = parse_message_type(schema)?;
    let have = reader.metadata().file_metadata().schema_descr();
    let names: Vec<String> = have.columns().iter().map(|c| c.path().string()).collect();
    let want_names: Vec<String> = parquet::schema::types::SchemaDescriptor::new(Arc::new(want))
        .columns()
        .iter()
        .map(|c| c.path().string())
        .collect();
    let idx: Vec<usize> = want_names
        .iter()
        .map(|n| {
            names
                .iter()
                .position(|h| h == n)
                .ok_or_else(|| invalid(format!("no column {n}")))
        })
        .collect::<Result<_, _>>()?;
    let mut out = Vec::new();
    for g in 0..reader.num_row_groups() {
        let rg = reader.get_row_group(g)?;
        let rows = usize::try_from(rg.metadata().num_rows()).unwrap_or(0);
        let cols = idx
            .iter()
            .map(|&i| rg.get_column_reader(i))
            .collect::<Result<Vec<_>, _>>()?;
        out.push((rows, cols));
    }
    Ok(out)
}

fn text(b: &ByteArray) -> Result<&str, TableError> {
    std::str::from_utf8(b.data()).map_err(|_| invalid("text column is not UTF-8"))
}

fn u16_of(v: Option<i32>) -> Result<u16, TableError> {
    v.map_or(Ok(0), |v| {
        u16::try_from(v).map_err(|_| invalid(format!("{v} is out of range")))
    })
}

fn u64_of(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// Reads `NAME.flows.parquet`.
///
/// # Errors
///
/// When a file cannot be read or written, or holds what it should not (the error says which).
#[expect(
    clippy::many_single_char_names,
    reason = "short names for a row's parts"
)]
pub fn read_flows(
    bytes: Bytes,
    want_blocks: &dyn Fn(&FlowRow) -> bool,
) -> Result<(Meta, Vec<FlowRow>), TableError> {
    use parquet::data_type::{ByteArrayType as S, Int32Type as I, Int64Type as L};
    let (reader, meta) = open(bytes)?;
    let mut out = Vec::new();
    for (rows, cols) in columns(&reader, FLOWS_READ_SCHEMA)? {
        let mut cols = cols.into_iter();
        let mut next = || cols.next().ok_or_else(|| invalid("missing column"));
        let _file = read_col::<S>(next()?, rows)?;
        let cid = spread(read_col::<S>(next()?, rows)?, rows)?;
        let ipv = spread(read_col::<I>(next()?, rows)?, rows)?;
        let proto = spread(read_col::<I>(next()?, rows)?, rows)?;
        let ethertype = read_col::<I>(next()?, rows)?.vals;
        let src = read_col::<S>(next()?, rows)?.vals;
        let dst = read_col::<S>(next()?, rows)?.vals;
        let sport = spread(read_col::<I>(next()?, rows)?, rows)?;
        let dport = spread(read_col::<I>(next()?, rows)?, rows)?;
        let ity = spread(read_col::<I>(next()?, rows)?, rows)?;
        let icode = spread(read_col::<I>(next()?, rows)?, rows)?;
        let vlan = spread(read_col::<I>(next()?, rows)?, rows)?;
        let ivlan = spread(read_col::<I>(next()?, rows)?, rows)?;
        let tun = spread(read_col::<S>(next()?, rows)?, rows)?;
        let tid = spread(read_col::<L>(next()?, rows)?, rows)?;
        let flags = read_col::<I>(next()?, rows)?.vals;
        let mut nums = Vec::new();
        for _ in 0..8 {
            nums.push(read_col::<L>(next()?, rows)?.vals);
        }
        let list_reader = next()?;
        if [ethertype.len(), src.len(), dst.len(), flags.len()]
            .iter()
            .chain(nums.iter().map(Vec::len).collect::<Vec<_>>().iter())
            .any(|&n| n != rows)
        {
            return Err(invalid("a required column has the wrong number of values"));
        }
        let first_row = out.len();
        let mut wanted = Vec::with_capacity(rows);
        for i in 0..rows {
            let family = match ipv[i] {
                None => FAMILY_L2,
                Some(4) => FAMILY_V4,
                Some(6) => FAMILY_V6,
                Some(v) => return Err(invalid(format!("ip_version {v}"))),
            };
            let s = parse_addr(family, text(&src[i])?).ok_or_else(|| invalid("bad src"))?;
            let d = parse_addr(family, text(&dst[i])?).ok_or_else(|| invalid("bad dst"))?;
            let proto = u8::try_from(proto[i].unwrap_or(0)).map_err(|_| invalid("protocol"))?;
            let (sp, dp, one_way) = match (sport[i], ity[i]) {
                (Some(_), _) => (u16_of(sport[i])?, u16_of(dport[i])?, false),
                (None, Some(t)) => {
                    let t = u8::try_from(t).map_err(|_| invalid("icmp_type"))?;
                    if let Some(c) = icode[i] {
                        (u16::from(t), u16_of(Some(c))?, true)
                    } else {
                        let (a, b, _) = community::icmp_ports(proto, t, 0);
                        (a, b, false)
                    }
                }
                (None, None) => (0, 0, false),
            };
            let mut base = FlowKey {
                family,
                proto,
                flags: u8::try_from(flags[i]).map_err(|_| invalid("flags"))?,
                ethertype: u16::try_from(ethertype[i]).map_err(|_| invalid("ethertype"))?,
                ..FlowKey::default()
            };
            for v in [vlan[i], ivlan[i]].into_iter().flatten() {
                let n = usize::from(base.vlans);
                base.vlan[n] = u16_of(Some(v))?;
                base.vlans += 1;
            }
            if let Some(t) = &tun[i] {
                base.tunnel = tunnel_kind(text(t)?).ok_or_else(|| invalid("tunnel"))?;
                base.tunnel_id =
                    u32::try_from(tid[i].unwrap_or(0)).map_err(|_| invalid("tunnel_id"))?;
            }
            let n = base.addr_len();
            let p = flow::key_from(base, &s[..n], &d[..n], sp, dp, one_way);
            let row = FlowRow {
                key: p.key,
                first_forward: p.forward,
                community_id: cid[i]
                    .as_ref()
                    .map(|c| text(c).map(ToString::to_string))
                    .transpose()?,
                first_ns: u64_of(nums[0][i]),
                last_ns: u64_of(nums[1][i]),
                packets: [u64_of(nums[4][i]), u64_of(nums[6][i])],
                bytes: [u64_of(nums[5][i]), u64_of(nums[7][i])],
                block_runs: Vec::new(),
            };
            wanted.push(want_blocks(&row));
            out.push(row);
        }
        if wanted.iter().any(|&w| w) {
            read_runs(list_reader, &wanted, &mut out[first_row..])?;
        }
    }
    Ok((meta, out))
}

/// Reads the `block_runs` column into the rows `wanted` keeps, skipping the others' lists
/// undecoded into memory.
fn read_runs(
    reader: ColumnReader,
    wanted: &[bool],
    rows: &mut [FlowRow],
) -> Result<(), TableError> {
    let mut r =
        parquet::column::reader::get_typed_column_reader::<parquet::data_type::Int32Type>(reader);
    let (mut vals, mut defs, mut reps) = (Vec::new(), Vec::new(), Vec::new());
    let mut i = 0;
    while i < wanted.len() {
        if !wanted[i] {
            let n = wanted[i..].iter().take_while(|&&w| !w).count();
            if r.skip_records(n)? != n {
                return Err(invalid("block lists end before the rows"));
            }
            i += n;
            continue;
        }
        vals.clear();
        defs.clear();
        reps.clear();
        let (records, _, _) = r.read_records(1, Some(&mut defs), Some(&mut reps), &mut vals)?;
        if records != 1 || vals.len() % 2 != 0 {
            return Err(invalid("block runs come in pairs"));
        }
        let u = |v: i32| u32::try_from(v).map_err(|_| invalid("negative block ordinal"));
        rows[i].block_runs = vals
            .chunks(2)
            .map(|c| Ok((u(c[0])?, u(c[1])?)))
            .collect::<Result<_, TableError>>()?;
        i += 1;
    }
    Ok(())
}

/// Reads `NAME.blocks.parquet`, in file order.
///
/// # Errors
///
/// When a file cannot be read or written, or holds what it should not (the error says which).
pub fn read_blocks(bytes: Bytes) -> Result<(Meta, Vec<Block>), TableError> {
    use parquet::data_type::{ByteArrayType as S, Int32Type as I, Int64Type as L};
    let (reader, meta) = open(bytes)?;
    let mut out = Vec::new();
    for (rows, cols) in columns(&reader, BLOCKS_SCHEMA)? {
        let mut cols = cols.into_iter();
        let mut next = || cols.next().ok_or_else(|| invalid("missing column"));
        let _file = read_col::<S>(next()?, rows)?;
        let offset = read_col::<L>(next()?, rows)?.vals;
        let len = read_col::<L>(next()?, rows)?.vals;
        let raw = read_col::<L>(next()?, rows)?.vals;
        let kind = read_col::<S>(next()?, rows)?.vals;
        let packets = read_col::<L>(next()?, rows)?.vals;
        let first = spread(read_col::<L>(next()?, rows)?, rows)?;
        let last = spread(read_col::<L>(next()?, rows)?, rows)?;
        let ifs = read_col::<I>(next()?, rows)?.vals;
        if [
            offset.len(),
            len.len(),
            raw.len(),
            kind.len(),
            packets.len(),
            ifs.len(),
        ]
        .iter()
        .any(|&n| n != rows)
        {
            return Err(invalid("a required column has the wrong number of values"));
        }
        for i in 0..rows {
            out.push(Block {
                kind: BlockKind::from_name(text(&kind[i])?).ok_or_else(|| invalid("block kind"))?,
                offset: u64_of(offset[i]),
                len: u64_of(len[i]),
                raw_len: u64_of(raw[i]),
                packets: u64_of(packets[i]),
                first_ns: first[i].map_or(0, u64_of),
                last_ns: last[i].map_or(0, u64_of),
                interfaces: u32::try_from(ifs[i]).unwrap_or(0),
            });
        }
    }
    if out.windows(2).any(|w| w[0].offset + w[0].len > w[1].offset) {
        return Err(invalid("blocks overlap or are out of order"));
    }
    Ok((meta, out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::writer::{Chunk, ChunkKind};
    use crate::store::index::Indexer;

    fn frame(v6: bool, sp: u16, dp: u16, vlan: Option<u16>) -> Vec<u8> {
        let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1];
        if let Some(v) = vlan {
            f.extend_from_slice(&[0x81, 0]);
            f.extend_from_slice(&v.to_be_bytes());
        }
        if v6 {
            f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0, 0, 8, 17, 64]);
            f.extend_from_slice(&"2001:db8::9".parse::<Ipv6Addr>().unwrap().octets());
            f.extend_from_slice(&"2001:db8::1".parse::<Ipv6Addr>().unwrap().octets());
        } else {
            f.extend_from_slice(&[0x08, 0, 0x45, 0, 0, 28, 0, 0, 0, 0, 64, 6, 0, 0]);
            if sp == 80 {
                f.extend_from_slice(&[192, 0, 2, 1, 192, 0, 2, 9]);
            } else {
                f.extend_from_slice(&[192, 0, 2, 9, 192, 0, 2, 1]);
            }
        }
        f.extend_from_slice(&sp.to_be_bytes());
        f.extend_from_slice(&dp.to_be_bytes());
        f.extend_from_slice(&[0; 4]);
        f
    }

    #[test]
    fn flows_and_blocks_round_trip() {
        let mut ix = Indexer::new(false);
        ix.chunk(&Chunk {
            kind: ChunkKind::Header,
            offset: 0,
            len: 64,
            raw_len: 64,
            packets: 0,
        });
        let frames = [
            frame(false, 5000, 80, None),
            frame(false, 80, 5000, None),
            frame(true, 53, 6000, Some(42)),
            frame(false, 1, 2, Some(7)),
        ];
        for (i, f) in frames.iter().enumerate() {
            ix.packet(f, (u8::from(i == 3), 99), 10 + i as u64, 70, 0, i * 80);
        }
        ix.chunk(&Chunk {
            kind: ChunkKind::Packets,
            offset: 64,
            len: 320,
            raw_len: 320,
            packets: 4,
        });
        let index = ix.take();
        let meta = Meta {
            file: "x.pcapng".into(),
            bytes: 384,
            packets: 4,
            flows: 3,
            first_ns: 10,
            last_ns: 13,
            ..Meta::default()
        };
        let (flows, blocks) = encode(&index, &meta).unwrap();
        let (m, rows) = read_flows(Bytes::from(flows), &|_| true).unwrap();
        assert_eq!(m, meta);
        assert_eq!(rows.len(), 3);
        for (row, flow) in rows.iter().zip(&index.flows) {
            assert_eq!(row.key, flow.key);
            assert_eq!(row.first_forward, flow.first_forward);
            assert_eq!(row.community_id, flow.key.community_id());
            assert_eq!(row.block_runs, [(1, 1)]);
        }
        assert_eq!(rows[0].packets, [1, 1]);
        assert_eq!(rows[0].endpoints().1, 5000);
        assert_eq!(rows[2].key.tunnel, 1);
        let (_, b) = read_blocks(Bytes::from(blocks)).unwrap();
        assert_eq!(b, index.blocks);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(read_flows(Bytes::from_static(b"PAR1 not really PAR1"), &|_| true).is_err());
        let mut x: u32 = 3;
        for n in [0, 4, 8, 100, 1000] {
            let junk: Vec<u8> = (0..n)
                .map(|_| {
                    x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    x.to_be_bytes()[1]
                })
                .collect();
            assert!(read_blocks(Bytes::from(junk)).is_err());
        }
    }
}
