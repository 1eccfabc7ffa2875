//! Struct member offsets from the running kernel's BTF (/sys/kernel/btf/vmlinux).
//!
//! Rust eBPF has no CO-RE relocations, so the few kernel struct fields the programs read are
//! located here at start and handed to the programs as a global. This is a minimal reader of
//! the BTF format (`Documentation/bpf/btf.rst`): it walks the type section once, indexes named
//! structs, and resolves `struct.member`, descending into anonymous struct/union members.

use std::collections::HashMap;

use kindling_agent_common::KernelOffsets;

/// Errors from reading BTF.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The BTF file could not be read.
    #[error("cannot read kernel BTF at {path}: {source} (is CONFIG_DEBUG_INFO_BTF on?)")]
    Read {
        /// The path tried.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The blob is not BTF or is cut short.
    #[error("malformed kernel BTF: {0}")]
    Malformed(&'static str),
    /// A struct or member the programs need does not exist in this kernel.
    #[error("kernel BTF has no `{0}`: this kernel's layout is not supported")]
    Missing(String),
    /// A layout the programs read in one copy is not the one they expect.
    #[error(
        "kernel BTF puts `{field}` at byte {got}, the programs expect {want}: this kernel's layout is not supported"
    )]
    Layout {
        /// struct.member
        field: String,
        /// Its offset in this kernel.
        got: u64,
        /// The offset the programs read it at.
        want: u64,
    },
}

/// Result alias for this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

const KIND_INT: u32 = 1;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_VAR: u32 = 14;
const KIND_DATASEC: u32 = 15;
const KIND_DECL_TAG: u32 = 17;
const KIND_TYPE_TAG: u32 = 18;
const KIND_ENUM64: u32 = 19;

#[derive(Debug, Clone)]
struct Member {
    name_off: u32,
    type_id: u32,
    bit_offset: u32,
}

#[derive(Debug, Clone)]
struct Type {
    kind: u32,
    /// Referenced type for typedef/const/volatile/restrict/type_tag.
    type_id: u32,
    members: Vec<Member>,
}

/// The names of an enum's values, e.g. `skb_drop_reason`: value -> name without `prefix`.
pub use crate::decode::EnumNames;

/// The types of one BTF blob, enough to resolve struct member offsets.
#[derive(Debug)]
pub struct KernelBtf {
    /// Indexed by type id (id 0 is `void`).
    types: Vec<Type>,
    strings: Vec<u8>,
    structs_by_name: HashMap<String, u32>,
    /// Named enums: name -> [(value name offset, value)].
    enums_by_name: HashMap<String, Vec<(u32, u32)>>,
}

fn u32_at(b: &[u8], off: usize) -> Result<u32> {
    b.get(off..off + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
        .ok_or(Error::Malformed("truncated"))
}

impl KernelBtf {
    /// Reads the running kernel's BTF.
    pub fn from_sys_fs() -> Result<Self> {
        let path = "/sys/kernel/btf/vmlinux";
        let data = std::fs::read(path).map_err(|source| Error::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&data)
    }

    /// Parses a little-endian BTF blob.
    pub fn parse(data: &[u8]) -> Result<Self> {
        if data.len() < 24 || data[0..2] != [0x9f, 0xeb] {
            return Err(Error::Malformed("bad magic (not little-endian BTF)"));
        }
        let hdr_len = u32_at(data, 4)? as usize;
        let type_off = u32_at(data, 8)? as usize;
        let type_len = u32_at(data, 12)? as usize;
        let str_off = u32_at(data, 16)? as usize;
        let str_len = u32_at(data, 20)? as usize;
        let section = |off: usize, len: usize, what| {
            let start = hdr_len.checked_add(off).ok_or(Error::Malformed(what))?;
            data.get(start..start.checked_add(len).ok_or(Error::Malformed(what))?)
                .ok_or(Error::Malformed(what))
        };
        let types_bytes = section(type_off, type_len, "type section out of bounds")?;
        let strings = section(str_off, str_len, "string section out of bounds")?.to_vec();

        let mut types = vec![Type {
            kind: 0,
            type_id: 0,
            members: Vec::new(),
        }];
        let mut structs_by_name = HashMap::new();
        let mut enums_by_name = HashMap::new();
        let mut pos = 0;
        while pos < types_bytes.len() {
            let name_off = u32_at(types_bytes, pos)?;
            let info = u32_at(types_bytes, pos + 4)?;
            let size_or_type = u32_at(types_bytes, pos + 8)?;
            pos += 12;
            let vlen = (info & 0xffff) as usize;
            let kind = (info >> 24) & 0x1f;
            let kind_flag = info >> 31 == 1;
            let mut members = Vec::new();
            let extra = match kind {
                KIND_INT | KIND_VAR | KIND_DECL_TAG => 4,
                KIND_ARRAY => 12,
                KIND_STRUCT | KIND_UNION => {
                    for i in 0..vlen {
                        let m = pos + i * 12;
                        let raw_offset = u32_at(types_bytes, m + 8)?;
                        members.push(Member {
                            name_off: u32_at(types_bytes, m)?,
                            type_id: u32_at(types_bytes, m + 4)?,
                            // With kind_flag the top 8 bits hold a bitfield's size.
                            bit_offset: if kind_flag {
                                raw_offset & 0xff_ffff
                            } else {
                                raw_offset
                            },
                        });
                    }
                    vlen * 12
                }
                KIND_ENUM => {
                    if name_off != 0 {
                        let mut values = Vec::with_capacity(vlen);
                        for i in 0..vlen {
                            let v = pos + i * 8;
                            values.push((u32_at(types_bytes, v)?, u32_at(types_bytes, v + 4)?));
                        }
                        let name = str_at(&strings, name_off).to_owned();
                        enums_by_name.entry(name).or_insert(values);
                    }
                    vlen * 8
                }
                KIND_FUNC_PROTO => vlen * 8,
                KIND_DATASEC | KIND_ENUM64 => vlen * 12,
                _ => 0,
            };
            pos += extra;
            let id = types.len() as u32;
            if kind == KIND_STRUCT && name_off != 0 {
                let name = str_at(&strings, name_off);
                // vmlinux BTF is deduplicated: one definition per struct name.
                structs_by_name.entry(name.to_owned()).or_insert(id);
            }
            types.push(Type {
                kind,
                type_id: size_or_type,
                members,
            });
        }
        Ok(Self {
            types,
            strings,
            structs_by_name,
            enums_by_name,
        })
    }

    /// The values of `enum name`, named without `prefix` (e.g. `SKB_DROP_REASON_`); empty when
    /// this kernel has no such enum.
    pub fn enum_names(&self, name: &str, prefix: &str) -> EnumNames {
        self.enums_by_name
            .get(name)
            .map(|values| {
                values
                    .iter()
                    .map(|&(off, v)| {
                        let n = self.name(off);
                        (v, n.strip_prefix(prefix).unwrap_or(n).to_owned())
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    fn name(&self, off: u32) -> &str {
        str_at(&self.strings, off)
    }

    /// Follows typedef/const/volatile/restrict/type_tag to the underlying type.
    fn resolve(&self, mut id: u32) -> Option<&Type> {
        for _ in 0..32 {
            let t = self.types.get(id as usize)?;
            match t.kind {
                KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG => {
                    id = t.type_id
                }
                _ => return Some(t),
            }
        }
        None
    }

    fn find_member(&self, t: &Type, member: &str, depth: u32) -> Option<u32> {
        if let Some(m) = t
            .members
            .iter()
            .find(|m| m.name_off != 0 && self.name(m.name_off) == member)
        {
            return Some(m.bit_offset);
        }
        if depth == 0 {
            return None;
        }
        // Anonymous struct/union members (struct_group, unions of variants).
        t.members.iter().filter(|m| m.name_off == 0).find_map(|m| {
            let inner = self.resolve(m.type_id)?;
            if !matches!(inner.kind, KIND_STRUCT | KIND_UNION) {
                return None;
            }
            Some(m.bit_offset + self.find_member(inner, member, depth - 1)?)
        })
    }

    /// Byte offset of `member` in `struct strukt`.
    pub fn member_offset(&self, strukt: &str, member: &str) -> Result<u64> {
        let missing = || Error::Missing(format!("struct {strukt}.{member}"));
        let id = *self.structs_by_name.get(strukt).ok_or_else(missing)?;
        let bits = self
            .find_member(&self.types[id as usize], member, 8)
            .ok_or_else(missing)?;
        if bits % 8 != 0 {
            return Err(Error::Missing(format!(
                "byte-aligned struct {strukt}.{member}"
            )));
        }
        Ok(u64::from(bits / 8))
    }

    /// The offsets `agent-ebpf` needs.
    pub fn kernel_offsets(&self) -> Result<KernelOffsets> {
        let common = self.member_offset("sock", "__sk_common")?;
        Ok(KernelOffsets {
            tcp_bytes_sent: self.member_offset("tcp_sock", "bytes_sent")?,
            tcp_bytes_retrans: self.member_offset("tcp_sock", "bytes_retrans")?,
            tcp_bytes_received: self.member_offset("tcp_sock", "bytes_received")?,
            // Newer kernels (this 6.18 one) moved `sock.sk_flags` into `sock_common`, as `skc_flags`.
            sock_flags: self.member_offset("sock", "sk_flags").or_else(|_| {
                Ok::<_, Error>(common + self.member_offset("sock_common", "skc_flags")?)
            })?,
            sock_type: self.member_offset("sock", "sk_type")?,
            sock_protocol: self.member_offset("sock", "sk_protocol")?,
            // `struct sock` begins with its `struct sock_common` (`__sk_common`).
            skc_family: common + self.member_offset("sock_common", "skc_family")?,
            skc_daddr: common + self.member_offset("sock_common", "skc_daddr")?,
            skc_rcv_saddr: common + self.member_offset("sock_common", "skc_rcv_saddr")?,
            skc_dport: common + self.member_offset("sock_common", "skc_dport")?,
            skc_num: common + self.member_offset("sock_common", "skc_num")?,
            skc_state: common + self.member_offset("sock_common", "skc_state")?,
            inet_sport: self.member_offset("inet_sock", "inet_sport")?,
            skc_v6_daddr: common + self.member_offset("sock_common", "skc_v6_daddr")?,
            skc_v6_rcv_saddr: common + self.member_offset("sock_common", "skc_v6_rcv_saddr")?,
            tcp_srtt_us: self.member_offset("tcp_sock", "srtt_us")?,
            tcp_total_retrans: self.member_offset("tcp_sock", "total_retrans")?,
            // struct minmax { struct minmax_sample s[3]; }: s[0] opens it.
            tcp_rtt_min: self.member_offset("tcp_sock", "rtt_min")?
                + self.member_offset("minmax_sample", "v")?,
            sock_err: self.member_offset("sock", "sk_err")?,
            skb_head: self.member_offset("sk_buff", "head")?,
            skb_network_header: self.member_offset("sk_buff", "network_header")?,
            tcp_copied_seq: self.member_offset("tcp_sock", "copied_seq")?,
            tcp_write_seq: self.member_offset("tcp_sock", "write_seq")?,
            task_flags: self.member_offset("task_struct", "flags")?,
            task_files: self.member_offset("task_struct", "files")?,
            files_fdt: self.member_offset("files_struct", "fdt")?,
            fdtable_fd: self.member_offset("fdtable", "fd")?,
            file_inode: self.member_offset("file", "f_inode")?,
            inode_mode: self.member_offset("inode", "i_mode")?,
            file_private_data: self.member_offset("file", "private_data")?,
            socket_sk: self.member_offset("socket", "sk")?,
        })
    }

    /// Checks the layouts the programs read in one copy instead of field by field: the
    /// registers of `struct pt_regs` that hold a syscall's arguments, the head of
    /// `struct sock_common` (daddr, rcv_saddr, then dport, num and family at 12, 14 and 16)
    /// and `sock.sk_protocol` with `sk_type` right behind it.
    pub fn check_fixed_layouts(&self, offsets: &KernelOffsets) -> Result<()> {
        use kindling_agent_common::pt_regs;
        let daddr = offsets.skc_daddr;
        let expected = [
            (
                "pt_regs.di",
                self.member_offset("pt_regs", "di")?,
                pt_regs::DI,
            ),
            (
                "pt_regs.si",
                self.member_offset("pt_regs", "si")?,
                pt_regs::SI,
            ),
            (
                "pt_regs.orig_ax",
                self.member_offset("pt_regs", "orig_ax")?,
                pt_regs::ORIG_AX,
            ),
            (
                "pt_regs.dx",
                self.member_offset("pt_regs", "dx")?,
                pt_regs::DX,
            ),
            (
                "pt_regs.r10",
                self.member_offset("pt_regs", "r10")?,
                pt_regs::R10,
            ),
            (
                "pt_regs.r8",
                self.member_offset("pt_regs", "r8")?,
                pt_regs::R8,
            ),
            (
                "sock_common.skc_rcv_saddr",
                offsets.skc_rcv_saddr,
                daddr + 4,
            ),
            ("sock_common.skc_dport", offsets.skc_dport, daddr + 12),
            ("sock_common.skc_num", offsets.skc_num, daddr + 14),
            ("sock_common.skc_family", offsets.skc_family, daddr + 16),
            ("sock.sk_type", offsets.sock_type, offsets.sock_protocol + 2),
        ];
        for (field, got, want) in expected {
            if got != want {
                return Err(Error::Layout {
                    field: field.to_owned(),
                    got,
                    want,
                });
            }
        }
        Ok(())
    }
}

fn str_at(strings: &[u8], off: u32) -> &str {
    let tail = strings.get(off as usize..).unwrap_or_default();
    let end = tail.iter().position(|&b| b == 0).unwrap_or(tail.len());
    std::str::from_utf8(&tail[..end]).unwrap_or("")
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::*;

    /// Member offset of `strukt.member` as bpftool (libbpf's BTF reader) prints it: the
    /// independent ground truth for our reader.
    fn bpftool_offset(strukt: &str, member: &str) -> u64 {
        let out = Command::new("bpftool")
            .args([
                "btf",
                "dump",
                "file",
                "/sys/kernel/btf/vmlinux",
                "format",
                "raw",
            ])
            .output()
            .expect("bpftool must be installed (scripts/setup.sh installs it)");
        assert!(out.status.success(), "bpftool failed");
        let text = String::from_utf8_lossy(&out.stdout);
        let header = format!("STRUCT '{strukt}' ");
        let mut lines = text
            .lines()
            .skip_while(|l| !(l.contains(&header) && l.starts_with('[')));
        lines
            .next()
            .unwrap_or_else(|| panic!("bpftool has no struct {strukt}"));
        let needle = format!("'{member}' ");
        let line = lines
            .take_while(|l| l.starts_with('\t'))
            .find(|l| l.trim_start().starts_with(&needle))
            .unwrap_or_else(|| panic!("bpftool: no direct member {strukt}.{member}"));
        let bits: u64 = line
            .split("bits_offset=")
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .and_then(|s| s.parse().ok())
            .expect("bits_offset");
        bits / 8
    }

    #[test]
    fn offsets_match_bpftool_on_running_kernel() {
        let btf = KernelBtf::from_sys_fs().expect("kernel BTF (needs /sys/kernel/btf/vmlinux)");
        for (s, m) in [
            ("tcp_sock", "bytes_sent"),
            ("tcp_sock", "bytes_retrans"),
            ("tcp_sock", "bytes_received"),
            ("sock", "sk_shutdown"),
            ("sock", "sk_type"),
            ("sock", "sk_protocol"),
            ("sock_common", "skc_family"),
            ("sock_common", "skc_v6_daddr"),
            ("tcp_sock", "srtt_us"),
            ("tcp_sock", "total_retrans"),
            ("tcp_sock", "rtt_min"),
            ("minmax_sample", "v"),
            ("sock", "sk_err"),
            ("sk_buff", "head"),
            ("tcp_sock", "copied_seq"),
            ("tcp_sock", "write_seq"),
            ("pt_regs", "di"),
            ("pt_regs", "r10"),
        ] {
            assert_eq!(
                btf.member_offset(s, m).unwrap(),
                bpftool_offset(s, m),
                "{s}.{m}"
            );
        }
        let off = btf.kernel_offsets().expect("offsets");
        // Members inside anonymous unions of sock_common, as pahole lays them out on x86_64:
        // skc_daddr and skc_rcv_saddr open the struct, skc_dport/skc_num follow at 12 and 14.
        assert_eq!(
            (off.skc_daddr, off.skc_rcv_saddr, off.skc_dport, off.skc_num),
            (0, 4, 12, 14)
        );
        btf.check_fixed_layouts(&off)
            .expect("the running kernel has the layouts the programs read in one copy");
    }

    #[test]
    fn a_layout_the_programs_do_not_expect_is_refused() {
        let btf = KernelBtf::from_sys_fs().expect("kernel BTF");
        let mut off = btf.kernel_offsets().expect("offsets");
        off.skc_num += 2;
        let err = btf.check_fixed_layouts(&off).unwrap_err().to_string();
        assert!(
            err.contains("sock_common.skc_num") && err.contains("expect 14"),
            "{err}"
        );
    }

    #[test]
    fn drop_reason_names_come_from_the_running_kernel() {
        let btf = KernelBtf::from_sys_fs().expect("kernel BTF");
        let reasons = btf.enum_names("skb_drop_reason", "SKB_DROP_REASON_");
        // Values from include/net/dropreason-core.h: NOT_SPECIFIED is 2 since 6.x (after
        // SKB_NOT_DROPPED_YET and SKB_CONSUMED); look NETFILTER_DROP up by name both ways.
        assert_eq!(reasons.get(&2).map(String::as_str), Some("NOT_SPECIFIED"));
        let nf = reasons
            .iter()
            .find(|(_, n)| *n == "NETFILTER_DROP")
            .map(|(v, _)| *v)
            .expect("NETFILTER_DROP");
        assert!(nf > 2);
        assert!(btf.enum_names("no_such_enum", "").is_empty());
        let rst = btf.enum_names("sk_rst_reason", "SK_RST_REASON_");
        assert!(rst.values().any(|n| n == "NOT_SPECIFIED"), "{rst:?}");
    }

    #[test]
    fn unknown_member_is_a_clear_error() {
        let btf = KernelBtf::from_sys_fs().expect("kernel BTF");
        let err = btf.member_offset("tcp_sock", "no_such_field").unwrap_err();
        assert_eq!(
            err.to_string(),
            "kernel BTF has no `struct tcp_sock.no_such_field`: this kernel's layout is not supported"
        );
    }

    #[test]
    fn garbage_is_a_clear_error() {
        assert!(matches!(
            KernelBtf::parse(b"not btf at all, no"),
            Err(Error::Malformed(_))
        ));
        let mut truncated = vec![0x9f, 0xeb, 1, 0, 24, 0, 0, 0];
        truncated.extend_from_slice(&[0, 0, 0, 0, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert!(matches!(
            KernelBtf::parse(&truncated),
            Err(Error::Malformed(_))
        ));
    }
}
