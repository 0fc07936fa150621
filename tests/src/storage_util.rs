//! Helpers for the storage tests: a small tmpfs that fills up, a pcapng block reader (for what
//! tshark does not show, such as interface statistics), directory listings and tshark fields.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Command,
};

use crate::{require_root, run_ok, run_stdout, unique_suffix};

/// A tmpfs of a given size mounted on a fresh directory; unmounted and removed on drop.
#[derive(Debug)]
pub struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (as `mount -o size=` takes it, e.g. "1m").
    pub fn new(size: &str) -> Self {
        require_root();
        let path = std::env::temp_dir().join(format!("tap-tmpfs-{}", unique_suffix()));
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("creating {}: {e}", path.display()));
        run_ok(
            Command::new("mount")
                .args([
                    "-t",
                    "tmpfs",
                    "-o",
                    &format!("size={size},mode=0755"),
                    "tmpfs",
                ])
                .arg(&path),
        );
        Self { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy, so a process still holding a file cannot keep the mount around.
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
        let _ = std::fs::remove_dir(&self.path);
    }
}

/// File names in `dir`, sorted (hidden ones included).
pub fn list_dir(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("listing {}: {e}", dir.display()))
        .map(|e| {
            e.expect("directory entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
}

/// One interface description block.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Idb {
    pub linktype: u16,
    pub snaplen: u32,
    pub name: String,
    pub description: String,
    /// `if_filter` text (after its type byte).
    pub filter: String,
    pub tsresol: Option<u8>,
}

/// One enhanced packet block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Epb {
    pub interface: u32,
    /// In the interface's `if_tsresol` units (ns for tap).
    pub ts: u64,
    pub orig_len: u32,
    pub data: Vec<u8>,
    pub flags: Option<u32>,
    /// `opt_comment` (tap: the tunnel a decapsulated packet came from).
    pub comment: Option<String>,
}

/// A pcapng file as blocks: section options, interfaces, packets, statistics.
#[derive(Debug, Clone, Default)]
pub struct Pcapng {
    /// Section header options by code (2 hardware, 3 os, 4 application).
    pub section: BTreeMap<u16, String>,
    pub interfaces: Vec<Idb>,
    pub packets: Vec<Epb>,
    /// Interface statistics: (interface id, option code → u64 value, comment).
    pub stats: Vec<(u32, BTreeMap<u16, u64>, String)>,
}

/// `isb_*` option codes.
pub const ISB_IFRECV: u16 = 4;
pub const ISB_IFDROP: u16 = 5;
pub const ISB_FILTERACCEPT: u16 = 6;
pub const ISB_OSDROP: u16 = 7;
pub const ISB_USRDELIV: u16 = 8;

fn u16_at(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}

fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes(b[o..o + 4].try_into().unwrap())
}

/// Options from `b` (a block body from the first option): (code, value).
fn options(b: &[u8]) -> Vec<(u16, Vec<u8>)> {
    let mut out = Vec::new();
    let mut off = 0;
    while off + 4 <= b.len() {
        let code = u16_at(b, off);
        let len = u16_at(b, off + 2) as usize;
        if code == 0 {
            break;
        }
        assert!(
            off + 4 + len <= b.len(),
            "option {code} runs past its block"
        );
        out.push((code, b[off + 4..off + 4 + len].to_vec()));
        off += 4 + len.div_ceil(4) * 4;
    }
    out
}

impl Pcapng {
    /// Parses a little-endian pcapng file; panics on anything malformed, including a block cut
    /// short at the end.
    pub fn parse(bytes: &[u8]) -> Self {
        let mut f = Self::default();
        let mut off = 0;
        assert!(
            bytes.len() >= 12 && u32_at(bytes, 0) == 0x0A0D_0D0A,
            "not a pcapng file"
        );
        while off < bytes.len() {
            assert!(
                off + 12 <= bytes.len(),
                "block header cut short at byte {off}"
            );
            let kind = u32_at(bytes, off);
            let len = u32_at(bytes, off + 4) as usize;
            assert!(
                len >= 12 && len.is_multiple_of(4) && off + len <= bytes.len(),
                "bad block length {len} at byte {off}"
            );
            assert_eq!(
                u32_at(bytes, off + len - 4) as usize,
                len,
                "trailing length of the block at byte {off}"
            );
            let body = &bytes[off + 8..off + len - 4];
            match kind {
                0x0A0D_0D0A => {
                    assert_eq!(u32_at(body, 0), 0x1A2B_3C4D, "byte-order magic");
                    for (code, v) in options(&body[16..]) {
                        f.section
                            .insert(code, String::from_utf8_lossy(&v).into_owned());
                    }
                }
                1 => {
                    let mut idb = Idb {
                        linktype: u16_at(body, 0),
                        snaplen: u32_at(body, 4),
                        ..Default::default()
                    };
                    for (code, v) in options(&body[8..]) {
                        match code {
                            2 => idb.name = String::from_utf8_lossy(&v).into_owned(),
                            3 => idb.description = String::from_utf8_lossy(&v).into_owned(),
                            9 => idb.tsresol = v.first().copied(),
                            11 => idb.filter = String::from_utf8_lossy(&v[1..]).into_owned(),
                            _ => {}
                        }
                    }
                    f.interfaces.push(idb);
                }
                6 => {
                    let cap = u32_at(body, 12) as usize;
                    let ts = (u64::from(u32_at(body, 4)) << 32) | u64::from(u32_at(body, 8));
                    let opts = options(&body[20 + cap.div_ceil(4) * 4..]);
                    let flags = opts
                        .iter()
                        .find(|(c, _)| *c == 2)
                        .map(|(_, v)| u32::from_le_bytes(v[..4].try_into().unwrap()));
                    let comment = opts
                        .iter()
                        .find(|(c, _)| *c == 1)
                        .map(|(_, v)| String::from_utf8_lossy(v).into_owned());
                    f.packets.push(Epb {
                        interface: u32_at(body, 0),
                        ts,
                        orig_len: u32_at(body, 16),
                        data: body[20..20 + cap].to_vec(),
                        flags,
                        comment,
                    });
                }
                5 => {
                    let mut values = BTreeMap::new();
                    let mut comment = String::new();
                    for (code, v) in options(&body[12..]) {
                        match code {
                            1 => comment = String::from_utf8_lossy(&v).into_owned(),
                            4..=8 => {
                                values.insert(code, u64::from_le_bytes(v[..8].try_into().unwrap()));
                            }
                            _ => {}
                        }
                    }
                    f.stats.push((u32_at(body, 0), values, comment));
                }
                _ => {}
            }
            off += len;
        }
        f
    }

    /// Enhanced packet blocks among the whole blocks at the start of `b` (a file still being
    /// written).
    pub fn count_packets(b: &[u8]) -> usize {
        let (mut off, mut n) = (0, 0);
        while off + 12 <= b.len() {
            let len = u32_at(b, off + 4) as usize;
            if len < 12 || off + len > b.len() {
                break;
            }
            n += usize::from(u32_at(b, off) == 6);
            off += len;
        }
        n
    }

    pub fn read(path: &Path) -> Self {
        Self::parse(
            &std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display())),
        )
    }

    /// The statistics value `code` of interface `id`, from its last statistics block.
    pub fn stat(&self, id: u32, code: u16) -> Option<u64> {
        self.stats
            .iter()
            .rev()
            .find(|(i, _, _)| *i == id)
            .and_then(|(_, v, _)| v.get(&code).copied())
    }
}

/// Decompresses a zstd file with the `zstd` tool.
pub fn zstd_decompress(path: &Path) -> Vec<u8> {
    run_ok(Command::new("zstd").args(["-d", "-c", "-q"]).arg(path)).stdout
}

/// What `zstd -d` makes of the bytes of a file still being written: the data of its whole
/// frames (a frame cut short at the end is left out).
pub fn zstd_decompress_prefix(bytes: &[u8]) -> Vec<u8> {
    use std::{io::Write as _, process::Stdio};
    let mut child = Command::new("zstd")
        .args(["-d", "-c", "-q"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting zstd");
    let mut stdin = child.stdin.take().expect("piped stdin");
    let input = bytes.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().expect("zstd output").stdout;
    let _ = writer.join();
    out
}

/// Owner uid of `path`.
pub fn owner(path: &Path) -> u32 {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::symlink_metadata(path)
        .unwrap_or_else(|e| panic!("stat {}: {e}", path.display()))
        .uid()
}

/// The uid of a user by name (`id -u NAME`).
pub fn uid_of(user: &str) -> u32 {
    run_stdout(Command::new("id").args(["-u", user]))
        .trim()
        .parse()
        .expect("a uid")
}
