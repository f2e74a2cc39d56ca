//! Every call into libnftnl and every raw socket call of the nft module: the only
//! `unsafe` in netpold. The rest of the module describes messages as plain data
//! (`ChainSpec`, `SetSpec`, `Expr`, …) and this file turns them into netlink bytes.

use std::ffi::{CStr, CString, c_char, c_void};
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::ptr::NonNull;

use nftnl::nftnl_sys as sys;

const FAMILY_INET: u16 = libc::NFPROTO_INET as u16;
/// One batch page; messages never straddle pages, so a page must hold the largest
/// message (a set-element message of up to 64 KiB) with room to spare.
const PAGE_SIZE: u32 = 1 << 20;
const MAX_MESSAGE: u32 = 1 << 17;

/// One attribute of an expression.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Attr {
    U64(u16, u64),
    U32(u16, u32),
    U16(u16, u16),
    Bytes(u16, Vec<u8>),
    Str(u16, CString),
}

/// A libnftnl expression by name (`"cmp"`, `"lookup"`, …) and its attributes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expr {
    pub name: &'static CStr,
    pub attrs: Vec<Attr>,
}

pub struct Hook {
    pub hooknum: u32,
    pub priority: i32,
    pub policy: u32,
}

pub struct ChainSpec<'a> {
    pub name: &'a CStr,
    pub hook: Option<Hook>,
    pub userdata: &'a [u8],
}

pub struct SetSpec<'a> {
    pub name: &'a CStr,
    pub id: u32,
    pub flags: u32,
    pub key_type: u32,
    pub key_len: u32,
    /// `(type, len)` of the mapped data, for maps.
    pub data: Option<(u32, u32)>,
    /// Element count, sent for anonymous sets as nft does.
    pub size: Option<u32>,
    pub userdata: &'a [u8],
}

pub struct ElemSpec {
    pub key: Vec<u8>,
    pub flags: u32,
    /// `(verdict code, chain)` for a verdict-map entry.
    pub verdict: Option<(i32, CString)>,
    pub userdata: Vec<u8>,
}

pub struct RuleSpec<'a> {
    pub chain: &'a CStr,
    pub exprs: &'a [Expr],
    pub userdata: &'a [u8],
}

/// A libnftnl object type and the function that frees it.
pub(super) trait Free {
    /// # Safety
    /// `p` must come from the type's libnftnl allocator and not be used afterwards.
    unsafe fn free(p: *mut Self);
}

macro_rules! free_with {
    ($($t:ty => $f:path),* $(,)?) => {$(
        impl Free for $t {
            unsafe fn free(p: *mut Self) {
                // SAFETY: forwarded from the trait's contract.
                unsafe { $f(p) }
            }
        }
    )*};
}

free_with! {
    sys::nftnl_batch => sys::nftnl_batch_free,
    sys::nftnl_table => sys::nftnl_table_free,
    sys::nftnl_chain => sys::nftnl_chain_free,
    sys::nftnl_set => sys::nftnl_set_free,
    sys::nftnl_rule => sys::nftnl_rule_free,
    sys::nftnl_set_elems_iter => sys::nftnl_set_elems_iter_destroy,
    sys::nftnl_expr_iter => sys::nftnl_expr_iter_destroy,
}

/// Owns a libnftnl object and frees it on drop.
pub(super) struct Owned<T: Free>(NonNull<T>);

impl<T: Free> Owned<T> {
    pub(super) fn new(ptr: *mut T) -> Owned<T> {
        // libnftnl returns NULL only when malloc fails; like the standard library
        // on allocation failure, there is nothing sensible left to do.
        Owned(NonNull::new(ptr).unwrap_or_else(|| std::process::abort()))
    }

    pub(super) fn raw(&self) -> *mut T {
        self.0.as_ptr()
    }
}

impl<T: Free> Drop for Owned<T> {
    fn drop(&mut self) {
        // SAFETY: the pointer came from the matching allocator and is freed once.
        unsafe { T::free(self.0.as_ptr()) }
    }
}

fn len_u32(bytes: &[u8]) -> u32 {
    u32::try_from(bytes.len()).expect("netlink attributes are far below 4 GiB")
}

/// A transaction being written: batch begin, messages, batch end.
pub struct Batch {
    raw: Owned<sys::nftnl_batch>,
    next_seq: u32,
    first_seq: u32,
    last_message: Option<NonNull<libc::nlmsghdr>>,
    messages: usize,
}

impl Batch {
    pub fn new(first_seq: u32) -> Batch {
        // SAFETY: plain allocation; sizes are constants well inside u32.
        let raw = Owned::new(unsafe { sys::nftnl_batch_alloc(PAGE_SIZE, MAX_MESSAGE) });
        let mut batch = Batch {
            raw,
            next_seq: first_seq,
            first_seq,
            last_message: None,
            messages: 0,
        };
        // SAFETY: the batch buffer always has room for one more message (libnftnl
        // starts a new page in `nftnl_batch_update` before it runs out).
        unsafe { sys::nftnl_batch_begin(batch.buffer(), batch.take_seq()) };
        batch.advance();
        batch
    }

    fn buffer(&self) -> *mut c_char {
        // SAFETY: `raw` is a live batch.
        unsafe { sys::nftnl_batch_buffer(self.raw.raw()).cast() }
    }

    fn take_seq(&mut self) -> u32 {
        let seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        seq
    }

    fn advance(&mut self) {
        // SAFETY: called once after each message is written into the current buffer.
        if unsafe { sys::nftnl_batch_update(self.raw.raw()) } < 0 {
            std::process::abort();
        }
    }

    /// Starts a message; the caller writes its payload into the returned header.
    ///
    /// Every message is written asking for an ACK, and the request is taken back from
    /// the previous one: so the last message asks, whatever happens to its header
    /// afterwards (libnftnl moves a message that overflows a page to the next page,
    /// leaving our pointer on a stale copy; clearing the flag on such a copy only
    /// costs one extra ACK).
    fn header(&mut self, msg_type: u32, flags: i32) -> (*mut libc::nlmsghdr, u32) {
        if let Some(previous) = self.last_message.take() {
            // SAFETY: `previous` points into a page of this batch (the page, or the
            // stale copy left behind when the message moved on), allocated until the
            // batch is freed.
            unsafe { (*previous.as_ptr()).nlmsg_flags &= !(libc::NLM_F_ACK as u16) };
        }
        let seq = self.take_seq();
        // SAFETY: `buffer()` has room for `MAX_MESSAGE` bytes (see `new`), and no
        // message is larger: `Encoder` bounds expressions per rule, libnftnl splits
        // element lists, names and comments are short.
        let nlh = unsafe {
            sys::nftnl_nlmsg_build_hdr(
                self.buffer(),
                msg_type as u16,
                FAMILY_INET,
                (flags | libc::NLM_F_REQUEST | libc::NLM_F_ACK) as u16,
                seq,
            )
        };
        self.last_message = NonNull::new(nlh);
        self.messages += 1;
        (nlh, seq)
    }

    pub fn table(&mut self, name: &CStr, delete: bool) -> u32 {
        // SAFETY: table object built, serialised and freed here.
        unsafe {
            let t = Owned::new(sys::nftnl_table_alloc());
            sys::nftnl_table_set_str(t.raw(), sys::NFTNL_TABLE_NAME as u16, name.as_ptr());
            sys::nftnl_table_set_u32(t.raw(), sys::NFTNL_TABLE_FAMILY as u16, FAMILY_INET.into());
            let (msg_type, flags) = if delete {
                (libc::NFT_MSG_DELTABLE, 0)
            } else {
                sys::nftnl_table_set_u32(t.raw(), sys::NFTNL_TABLE_FLAGS as u16, 0);
                (libc::NFT_MSG_NEWTABLE, libc::NLM_F_CREATE)
            };
            let (nlh, seq) = self.header(msg_type as u32, flags);
            sys::nftnl_table_nlmsg_build_payload(nlh, t.raw());
            self.advance();
            seq
        }
    }

    pub fn chain(&mut self, table: &CStr, spec: &ChainSpec) -> u32 {
        // SAFETY: chain object built, serialised and freed here; strings outlive the calls.
        unsafe {
            let c = Owned::new(sys::nftnl_chain_alloc());
            sys::nftnl_chain_set_str(c.raw(), sys::NFTNL_CHAIN_TABLE as u16, table.as_ptr());
            sys::nftnl_chain_set_str(c.raw(), sys::NFTNL_CHAIN_NAME as u16, spec.name.as_ptr());
            sys::nftnl_chain_set_u32(c.raw(), sys::NFTNL_CHAIN_FAMILY as u16, FAMILY_INET.into());
            if let Some(hook) = &spec.hook {
                sys::nftnl_chain_set_str(c.raw(), sys::NFTNL_CHAIN_TYPE as u16, c"filter".as_ptr());
                sys::nftnl_chain_set_u32(c.raw(), sys::NFTNL_CHAIN_HOOKNUM as u16, hook.hooknum);
                sys::nftnl_chain_set_s32(c.raw(), sys::NFTNL_CHAIN_PRIO as u16, hook.priority);
                sys::nftnl_chain_set_u32(c.raw(), sys::NFTNL_CHAIN_POLICY as u16, hook.policy);
            }
            if !spec.userdata.is_empty() {
                sys::nftnl_chain_set_data(
                    c.raw(),
                    sys::NFTNL_CHAIN_USERDATA as u16,
                    spec.userdata.as_ptr().cast(),
                    len_u32(spec.userdata),
                );
            }
            let (nlh, seq) = self.header(libc::NFT_MSG_NEWCHAIN as u32, libc::NLM_F_CREATE);
            sys::nftnl_chain_nlmsg_build_payload(nlh, c.raw());
            self.advance();
            seq
        }
    }

    fn set_object(table: &CStr, spec: &SetSpec) -> Owned<sys::nftnl_set> {
        // SAFETY: set object built here; libnftnl copies every string and buffer.
        unsafe {
            let s = Owned::new(sys::nftnl_set_alloc());
            sys::nftnl_set_set_str(s.raw(), sys::NFTNL_SET_TABLE as u16, table.as_ptr());
            sys::nftnl_set_set_str(s.raw(), sys::NFTNL_SET_NAME as u16, spec.name.as_ptr());
            sys::nftnl_set_set_u32(s.raw(), sys::NFTNL_SET_FAMILY as u16, FAMILY_INET.into());
            // Id 0: a set from an earlier transaction, found by name.
            if spec.id != 0 {
                sys::nftnl_set_set_u32(s.raw(), sys::NFTNL_SET_ID as u16, spec.id);
            }
            sys::nftnl_set_set_u32(s.raw(), sys::NFTNL_SET_FLAGS as u16, spec.flags);
            sys::nftnl_set_set_u32(s.raw(), sys::NFTNL_SET_KEY_TYPE as u16, spec.key_type);
            sys::nftnl_set_set_u32(s.raw(), sys::NFTNL_SET_KEY_LEN as u16, spec.key_len);
            if let Some((data_type, data_len)) = spec.data {
                sys::nftnl_set_set_u32(s.raw(), sys::NFTNL_SET_DATA_TYPE as u16, data_type);
                sys::nftnl_set_set_u32(s.raw(), sys::NFTNL_SET_DATA_LEN as u16, data_len);
            }
            if let Some(size) = spec.size {
                sys::nftnl_set_set_u32(s.raw(), sys::NFTNL_SET_DESC_SIZE as u16, size);
            }
            if !spec.userdata.is_empty() {
                sys::nftnl_set_set_data(
                    s.raw(),
                    sys::NFTNL_SET_USERDATA as u16,
                    spec.userdata.as_ptr().cast(),
                    len_u32(spec.userdata),
                );
            }
            s
        }
    }

    pub fn set(&mut self, table: &CStr, spec: &SetSpec) -> u32 {
        let s = Self::set_object(table, spec);
        let (nlh, seq) = self.header(libc::NFT_MSG_NEWSET as u32, libc::NLM_F_CREATE);
        // SAFETY: `nlh` points into the batch buffer with room for one message.
        unsafe { sys::nftnl_set_nlmsg_build_payload(nlh, s.raw()) };
        self.advance();
        seq
    }

    /// Deletes a chain; its rules must be gone (flushed earlier in the transaction)
    /// and nothing may jump to it.
    pub fn delete_chain(&mut self, table: &CStr, name: &CStr) -> u32 {
        // SAFETY: chain object built, serialised and freed here.
        unsafe {
            let c = Owned::new(sys::nftnl_chain_alloc());
            sys::nftnl_chain_set_str(c.raw(), sys::NFTNL_CHAIN_TABLE as u16, table.as_ptr());
            sys::nftnl_chain_set_str(c.raw(), sys::NFTNL_CHAIN_NAME as u16, name.as_ptr());
            sys::nftnl_chain_set_u32(c.raw(), sys::NFTNL_CHAIN_FAMILY as u16, FAMILY_INET.into());
            let (nlh, seq) = self.header(libc::NFT_MSG_DELCHAIN as u32, 0);
            sys::nftnl_chain_nlmsg_build_payload(nlh, c.raw());
            self.advance();
            seq
        }
    }

    /// Deletes every rule of a chain (a rule deletion naming no handle).
    pub fn flush_chain(&mut self, table: &CStr, chain: &CStr) -> u32 {
        // SAFETY: rule object built, serialised and freed here.
        unsafe {
            let r = Owned::new(sys::nftnl_rule_alloc());
            sys::nftnl_rule_set_u32(r.raw(), sys::NFTNL_RULE_FAMILY as u16, FAMILY_INET.into());
            sys::nftnl_rule_set_str(r.raw(), sys::NFTNL_RULE_TABLE as u16, table.as_ptr());
            sys::nftnl_rule_set_str(r.raw(), sys::NFTNL_RULE_CHAIN as u16, chain.as_ptr());
            let (nlh, seq) = self.header(libc::NFT_MSG_DELRULE as u32, 0);
            sys::nftnl_rule_nlmsg_build_payload(nlh, r.raw());
            self.advance();
            seq
        }
    }

    /// Deletes a set or map; no rule may use it any more.
    pub fn delete_set(&mut self, table: &CStr, name: &CStr) -> u32 {
        // SAFETY: set object built, serialised and freed here.
        unsafe {
            let s = Owned::new(sys::nftnl_set_alloc());
            sys::nftnl_set_set_str(s.raw(), sys::NFTNL_SET_TABLE as u16, table.as_ptr());
            sys::nftnl_set_set_str(s.raw(), sys::NFTNL_SET_NAME as u16, name.as_ptr());
            sys::nftnl_set_set_u32(s.raw(), sys::NFTNL_SET_FAMILY as u16, FAMILY_INET.into());
            let (nlh, seq) = self.header(libc::NFT_MSG_DELSET as u32, 0);
            sys::nftnl_set_nlmsg_build_payload(nlh, s.raw());
            self.advance();
            seq
        }
    }

    /// Deletes every element of a set: an element deletion with no element list.
    pub fn flush_set(&mut self, table: &CStr, name: &CStr) -> u32 {
        // SAFETY: set object built, serialised and freed here; with no elements
        // libnftnl writes only the table and set names.
        unsafe {
            let s = Owned::new(sys::nftnl_set_alloc());
            sys::nftnl_set_set_str(s.raw(), sys::NFTNL_SET_TABLE as u16, table.as_ptr());
            sys::nftnl_set_set_str(s.raw(), sys::NFTNL_SET_NAME as u16, name.as_ptr());
            sys::nftnl_set_set_u32(s.raw(), sys::NFTNL_SET_FAMILY as u16, FAMILY_INET.into());
            let (nlh, seq) = self.header(libc::NFT_MSG_DELSETELEM as u32, 0);
            sys::nftnl_set_elems_nlmsg_build_payload(nlh, s.raw());
            self.advance();
            seq
        }
    }

    /// Adds elements to a set; libnftnl splits them over as many
    /// messages as they need. Returns the sequence numbers used.
    pub fn elements(
        &mut self,
        table: &CStr,
        spec: &SetSpec,
        elems: &[ElemSpec],
    ) -> std::ops::Range<u32> {
        self.element_messages(table, spec, elems, false)
    }

    /// Deletes elements (by key) from a set, as `elements` adds them.
    pub fn delete_elements(
        &mut self,
        table: &CStr,
        spec: &SetSpec,
        elems: &[ElemSpec],
    ) -> std::ops::Range<u32> {
        self.element_messages(table, spec, elems, true)
    }

    fn element_messages(
        &mut self,
        table: &CStr,
        spec: &SetSpec,
        elems: &[ElemSpec],
        delete: bool,
    ) -> std::ops::Range<u32> {
        let start = self.next_seq;
        if elems.is_empty() {
            return start..start;
        }
        let s = Self::set_object(table, spec);
        // SAFETY: each element is allocated, filled and handed to the set, which owns
        // and frees it; the iterator is destroyed before the set is dropped.
        unsafe {
            for elem in elems {
                let e = sys::nftnl_set_elem_alloc();
                if e.is_null() {
                    std::process::abort();
                }
                sys::nftnl_set_elem_set(
                    e,
                    sys::NFTNL_SET_ELEM_KEY as u16,
                    elem.key.as_ptr().cast(),
                    len_u32(&elem.key),
                );
                if elem.flags != 0 {
                    sys::nftnl_set_elem_set_u32(e, sys::NFTNL_SET_ELEM_FLAGS as u16, elem.flags);
                }
                if let Some((code, chain)) = &elem.verdict {
                    sys::nftnl_set_elem_set_u32(
                        e,
                        sys::NFTNL_SET_ELEM_VERDICT as u16,
                        *code as u32,
                    );
                    sys::nftnl_set_elem_set_str(
                        e,
                        sys::NFTNL_SET_ELEM_CHAIN as u16,
                        chain.as_ptr(),
                    );
                }
                if !elem.userdata.is_empty() {
                    sys::nftnl_set_elem_set(
                        e,
                        sys::NFTNL_SET_ELEM_USERDATA as u16,
                        elem.userdata.as_ptr().cast(),
                        len_u32(&elem.userdata),
                    );
                }
                sys::nftnl_set_elem_add(s.raw(), e);
            }
            let iter = Owned::new(sys::nftnl_set_elems_iter_create(s.raw()));
            while !sys::nftnl_set_elems_iter_cur(iter.raw()).is_null() {
                // EXCL: adding an element that exists is an error, never a silent no-op.
                let (nlh, _) = if delete {
                    self.header(libc::NFT_MSG_DELSETELEM as u32, 0)
                } else {
                    self.header(
                        libc::NFT_MSG_NEWSETELEM as u32,
                        libc::NLM_F_CREATE | libc::NLM_F_EXCL,
                    )
                };
                let more = sys::nftnl_set_elems_nlmsg_build_payload_iter(nlh, iter.raw());
                self.advance();
                if more <= 0 {
                    break;
                }
            }
        }
        start..self.next_seq
    }

    pub fn rule(&mut self, table: &CStr, spec: &RuleSpec) -> u32 {
        // SAFETY: the rule takes ownership of every expression added to it; all
        // attribute buffers are copied by libnftnl.
        unsafe {
            let r = Owned::new(sys::nftnl_rule_alloc());
            sys::nftnl_rule_set_u32(r.raw(), sys::NFTNL_RULE_FAMILY as u16, FAMILY_INET.into());
            sys::nftnl_rule_set_str(r.raw(), sys::NFTNL_RULE_TABLE as u16, table.as_ptr());
            sys::nftnl_rule_set_str(r.raw(), sys::NFTNL_RULE_CHAIN as u16, spec.chain.as_ptr());
            for expr in spec.exprs {
                let e = sys::nftnl_expr_alloc(expr.name.as_ptr());
                if e.is_null() {
                    std::process::abort();
                }
                for attr in &expr.attrs {
                    match attr {
                        Attr::U64(a, v) => sys::nftnl_expr_set_u64(e, *a, *v),
                        Attr::U32(a, v) => sys::nftnl_expr_set_u32(e, *a, *v),
                        Attr::U16(a, v) => sys::nftnl_expr_set_u16(e, *a, *v),
                        Attr::Bytes(a, v) => {
                            sys::nftnl_expr_set(e, *a, v.as_ptr().cast::<c_void>(), len_u32(v));
                        }
                        Attr::Str(a, v) => {
                            sys::nftnl_expr_set_str(e, *a, v.as_ptr());
                        }
                    }
                }
                sys::nftnl_rule_add_expr(r.raw(), e);
            }
            if !spec.userdata.is_empty() {
                sys::nftnl_rule_set_data(
                    r.raw(),
                    sys::NFTNL_RULE_USERDATA as u16,
                    spec.userdata.as_ptr().cast(),
                    len_u32(spec.userdata),
                );
            }
            let (nlh, seq) = self.header(
                libc::NFT_MSG_NEWRULE as u32,
                libc::NLM_F_CREATE | libc::NLM_F_APPEND,
            );
            sys::nftnl_rule_nlmsg_build_payload(nlh, r.raw());
            self.advance();
            seq
        }
    }

    /// Closes the batch. The last message asks for an acknowledgement (see `header`):
    /// errors are always reported, so that ACK and no error means the kernel took it all.
    pub fn finish(mut self) -> Finished {
        let last_seq = self.next_seq.wrapping_sub(1);
        let end_seq = self.take_seq();
        // SAFETY: as for the begin message.
        unsafe { sys::nftnl_batch_end(self.buffer(), end_seq) };
        self.advance();
        Finished {
            batch: self.raw,
            begin_seq: self.first_seq,
            end_seq,
            ack_seq: last_seq,
            messages: self.messages + 2,
        }
    }
}

pub struct Finished {
    batch: Owned<sys::nftnl_batch>,
    /// Sequence numbers of the batch-begin and batch-end messages; the messages
    /// between them have the numbers in between (modulo 2^32).
    pub begin_seq: u32,
    pub end_seq: u32,
    pub ack_seq: u32,
    pub messages: usize,
}

impl Finished {
    fn iovecs(&self) -> Vec<libc::iovec> {
        // SAFETY: the batch is complete; the iovecs point into its pages, which live
        // as long as `self`.
        unsafe {
            let n = sys::nftnl_batch_iovec_len(self.batch.raw());
            let mut iov = vec![
                libc::iovec {
                    iov_base: std::ptr::null_mut(),
                    iov_len: 0,
                };
                usize::try_from(n).unwrap_or(0)
            ];
            sys::nftnl_batch_iovec(self.batch.raw(), iov.as_mut_ptr(), n as u32);
            iov
        }
    }

    /// Whether `seq` belongs to this batch, begin and end included, across a wrap of
    /// the 32-bit counter.
    pub fn owns(&self, seq: u32) -> bool {
        seq.wrapping_sub(self.begin_seq) <= self.end_seq.wrapping_sub(self.begin_seq)
    }

    /// 1-based position of a message between begin and end.
    pub fn position(&self, seq: u32) -> u32 {
        seq.wrapping_sub(self.begin_seq)
    }

    /// Sequence numbers of the messages that ask for an acknowledgement, read back
    /// from the bytes that would be sent.
    #[cfg(test)]
    pub fn acked_seqs(&self) -> Vec<u32> {
        let mut out = Vec::new();
        for iov in self.iovecs() {
            // SAFETY: each iovec points at a page of this batch, `iov_len` bytes long.
            let mut page =
                unsafe { std::slice::from_raw_parts(iov.iov_base.cast::<u8>(), iov.iov_len) };
            while page.len() >= 16 {
                let len = u32::from_ne_bytes(page[0..4].try_into().unwrap()) as usize;
                let flags = u16::from_ne_bytes(page[6..8].try_into().unwrap());
                let seq = u32::from_ne_bytes(page[8..12].try_into().unwrap());
                if flags & libc::NLM_F_ACK as u16 != 0 {
                    out.push(seq);
                }
                page = &page[len.div_ceil(4) * 4..];
            }
        }
        out
    }

    pub fn bytes(&self) -> usize {
        self.iovecs().iter().map(|v| v.iov_len).sum()
    }

    /// The pages of the batch as the bytes that would be sent (messages never
    /// straddle pages), for reading the encoder's output back.
    pub fn pages(&self) -> Vec<&[u8]> {
        self.iovecs()
            .iter()
            // SAFETY: each iovec points at a page of this batch, `iov_len` bytes long,
            // alive as long as `self`.
            .map(|iov| unsafe {
                std::slice::from_raw_parts(iov.iov_base.cast::<u8>(), iov.iov_len)
            })
            .collect()
    }
}

/// A netfilter netlink socket in the current network namespace.
pub struct Socket {
    inner: mnl::Socket,
}

fn setsockopt_int(fd: RawFd, level: i32, name: i32, value: i32) -> io::Result<()> {
    // SAFETY: `value` is a live c_int and the length matches it.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const i32).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// A receive buffer aligned for `nlmsghdr`.
pub struct RecvBuf(Vec<u64>);

impl RecvBuf {
    pub fn new(bytes: usize) -> RecvBuf {
        RecvBuf(vec![0; bytes.div_ceil(8)])
    }
}

impl Socket {
    pub fn open() -> io::Result<Socket> {
        let inner = mnl::Socket::new(mnl::Bus::Netfilter)?;
        Ok(Socket { inner })
    }

    pub fn portid(&self) -> u32 {
        self.inner.portid()
    }

    /// Sends the whole batch in one `sendmsg`: the kernel treats each send as its
    /// own transaction, so a batch must never be split.
    pub fn send(&self, batch: &Finished) -> io::Result<()> {
        let fd = self.inner.as_raw_fd();
        let mut iov = batch.iovecs();
        let total: usize = iov.iter().map(|v| v.iov_len).sum();
        let wanted = i32::try_from(total + 64 * 1024).unwrap_or(i32::MAX);
        // The default 208 KiB send buffer refuses big batches with EMSGSIZE.
        setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, wanted)
            .or_else(|_| setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_SNDBUF, wanted))?;
        let mut addr = kernel_address();
        // SAFETY: an all-zero msghdr is valid; the pointers set below stay alive for
        // the call.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_name = (&mut addr as *mut libc::sockaddr_nl).cast();
        msg.msg_namelen = std::mem::size_of::<libc::sockaddr_nl>() as u32;
        msg.msg_iov = iov.as_mut_ptr();
        msg.msg_iovlen = iov.len();
        // SAFETY: `msg` describes live buffers owned by `batch` and `addr`.
        let sent = unsafe { libc::sendmsg(fd, &msg, 0) };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        if usize::try_from(sent).ok() != Some(total) {
            return Err(io::Error::other(format!(
                "netlink sent {sent} of {total} bytes"
            )));
        }
        Ok(())
    }

    /// Waits until a reply can be read; `false` on timeout.
    pub fn wait_readable(&self, timeout: std::time::Duration) -> io::Result<bool> {
        super::wire::wait_readable(&self.inner.as_raw_fd(), timeout)
    }

    /// Reads whatever is queued without waiting; `Ok(0)` when nothing is left. The
    /// kernel handles a batch inside `sendmsg`, so every reply is queued by the time
    /// `send` returns.
    pub fn recv_nowait(&self, buf: &mut RecvBuf) -> io::Result<&[u8]> {
        let fd = self.inner.as_raw_fd();
        let len = buf.0.len() * 8;
        // SAFETY: the buffer is valid for `len` bytes.
        let n = unsafe { libc::recv(fd, buf.0.as_mut_ptr().cast(), len, libc::MSG_DONTWAIT) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::WouldBlock {
                return Ok(&[]);
            }
            return Err(e);
        }
        let n = usize::try_from(n).unwrap_or(0).min(len);
        // SAFETY: u64 storage viewed as bytes; `n` bytes were written by the kernel.
        Ok(unsafe { std::slice::from_raw_parts(buf.0.as_ptr().cast::<u8>(), n) })
    }
}

/// The kernel's netlink address.
fn kernel_address() -> libc::sockaddr_nl {
    // SAFETY: sockaddr_nl is plain old data; all-zero with the family set addresses
    // the kernel.
    let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    addr
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A rule message of a few KiB, so a batch page holds a few hundred.
    fn big_rule(batch: &mut Batch) {
        let exprs: Vec<Expr> = (0..100)
            .map(|i| Expr {
                name: c"cmp",
                attrs: vec![
                    Attr::U32(1, 1),
                    Attr::U32(2, 0),
                    Attr::Bytes(3, vec![i; 16]),
                ],
            })
            .collect();
        batch.rule(
            c"t",
            &RuleSpec {
                chain: c"c",
                exprs: &exprs,
                userdata: &[0; 100],
            },
        );
    }

    #[test]
    fn the_last_message_asks_for_an_ack_even_when_it_moved_to_a_new_page() {
        let mut crossings = 0;
        for n in 1..=400u32 {
            let mut batch = Batch::new(1000);
            for _ in 0..n {
                big_rule(&mut batch);
            }
            let finished = batch.finish();
            let pages = finished.iovecs().len();
            let acked = finished.acked_seqs();
            // Messages have the numbers 1001..=1000 + n; batch end is 1001 + n.
            assert_eq!(acked.last(), Some(&(1000 + n)), "n = {n}: {acked:?}");
            // Each page switch may leave one earlier message asking too: harmless.
            assert!(
                acked.len() <= pages,
                "n = {n}: {acked:?} with {pages} pages"
            );
            if pages > 1 && acked.len() > 1 {
                crossings += 1;
            }
        }
        assert!(
            crossings > 0,
            "no batch had its last message moved to a new page"
        );
    }
}
