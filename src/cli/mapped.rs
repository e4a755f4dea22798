//! A large input file mapped into memory instead of read into it.
//!
//! `encrypt` and `decrypt` of a big file go through it in one streaming pass (`veil::stream`).
//! Read into a buffer, the whole file would stay resident to the end; mapped, there is no copy,
//! and the pages a pass has finished with are handed back to the kernel as it goes, so the file
//! costs the process a window of memory rather than its size. The pages stay in the page cache
//! and come back on a later touch, so handing them back never loses data.
//!
//! A mapping assumes the file is not truncated while veil runs (as every program that maps its
//! input does); the command takes a fraction of a second, and in-place writes never touch the
//! mapped file (they replace it by renaming a new one over it).

use std::cell::Cell;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::ptr::NonNull;

/// Files below this are read: a mapping costs more than it saves for them.
pub const MAP_FROM: u64 = 1 << 20;

/// A read-only private mapping of a whole file.
pub struct Mapped {
    start: NonNull<u8>,
    len: usize,
    /// The offset (page-aligned) before which pages have been handed back.
    released: Cell<usize>,
}

impl Mapped {
    /// Maps `file` (at least one byte long); `None` where the system refuses, and the caller
    /// reads the file instead.
    pub fn new(file: &File, len: u64) -> Option<Mapped> {
        let len = usize::try_from(len).ok().filter(|&n| n > 0)?;
        // SAFETY: a fresh read-only private mapping of a file we hold open; nothing else
        // aliases it, and it is unmapped only in `Drop`.
        let start = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_PRIVATE,
                file.as_raw_fd(),
                0,
            )
        };
        if start == libc::MAP_FAILED {
            return None;
        }
        // SAFETY: the range was just mapped. The hint only tunes read-ahead; its failure is harmless.
        unsafe { libc::madvise(start, len, libc::MADV_SEQUENTIAL) };
        Some(Mapped {
            start: NonNull::new(start.cast())?,
            len,
            released: Cell::new(0),
        })
    }

    pub fn bytes(&self) -> &[u8] {
        // SAFETY: `start..start + len` is mapped readable for as long as `self` lives.
        unsafe { std::slice::from_raw_parts(self.start.as_ptr(), self.len) }
    }

    /// Hands back the pages wholly before `offset`: the reader is done with that part for now.
    /// Their bytes stay the same (they are read again from the page cache if touched). An
    /// offset behind the last one starts a new pass over the input (encrypting reads it twice),
    /// whose pages are handed back from the start again.
    pub fn release_before(&self, offset: usize) {
        let page = page_size();
        let end = offset.min(self.len) / page * page;
        let mut from = self.released.get();
        if end < from {
            from = 0;
        }
        if end <= from {
            return;
        }
        // SAFETY: the range lies within the mapping and is page-aligned. MADV_DONTNEED on a
        // private file mapping that was never written drops the page table entries only; the
        // next read maps the same file bytes again, so no borrowed slice sees a change.
        unsafe {
            libc::madvise(
                self.start.as_ptr().add(from).cast(),
                end - from,
                libc::MADV_DONTNEED,
            )
        };
        self.released.set(end);
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly what `new` mapped; no borrow of `bytes` outlives `self`.
        unsafe { libc::munmap(self.start.as_ptr().cast(), self.len) };
    }
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(size)
        .ok()
        .filter(|&s| s > 0)
        .unwrap_or(4096)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn released_pages_read_back_the_same_bytes() {
        let mut file = tempfile::tempfile().expect("temp file");
        let content: Vec<u8> = (0..3 * MAP_FROM as usize + 123)
            .map(|i| (i % 251) as u8)
            .collect();
        file.write_all(&content).expect("write");
        let mapped = Mapped::new(&file, content.len() as u64).expect("mapped");
        assert_eq!(mapped.bytes(), &content[..]);
        mapped.release_before(2 * MAP_FROM as usize + 5);
        assert_eq!(mapped.released.get() % page_size(), 0);
        assert!(mapped.released.get() > 2 * MAP_FROM as usize - page_size());
        assert_eq!(mapped.bytes(), &content[..]);
        // A second pass starts again from the start.
        mapped.release_before(MAP_FROM as usize);
        assert_eq!(mapped.released.get(), MAP_FROM as usize);
        assert_eq!(mapped.bytes(), &content[..]);
        mapped.release_before(usize::MAX);
        assert_eq!(
            mapped.released.get(),
            content.len() / page_size() * page_size()
        );
        assert_eq!(mapped.bytes(), &content[..]);
    }

    #[test]
    fn an_empty_file_is_not_mapped() {
        let file = tempfile::tempfile().expect("temp file");
        assert!(Mapped::new(&file, 0).is_none());
    }
}
