//! Gives back the memory a daemon needed only to start.
//!
//! Parsing the command line, reading the state, binding sockets, joining the network and
//! setting up the control API run code and allocate memory that an idle node never touches
//! again, yet both stay resident: the code because the kernel keeps an executable's pages
//! mapped once used, and maps more than each fault needs (the cached neighbours of the page,
//! and in code, since Linux 6.16, a read-ahead to the end of the mapping), the memory because
//! malloc keeps freed heap. Once the node has joined, the daemon cuts its read-only file
//! mappings (code and constants of the executable and its libraries) into one-page
//! mappings, so that a fault maps one page, then pages them out and unmaps them: nothing is
//! lost, what runs later is mapped back from the page cache or read from the file, page by
//! page. It also returns freed heap and unused stack to the kernel. Only mappings that are
//! read-only, backed by a file and without pages of their own are touched; data, relocated
//! or not, stays as it is. Pages another process also maps stay in memory for it. This is
//! done once, after the start; nothing is paged out later.

/// Releases startup pages (Linux; elsewhere it does nothing). Returns the bytes of mappings
/// released, for the log.
pub fn release() -> u64 {
    imp::release()
}

#[cfg(target_os = "linux")]
mod imp {
    pub fn release() -> u64 {
        let released = release_code();
        release_unused_stack();
        // Last, once the smaps text read below is freed too.
        // SAFETY: malloc_trim only returns free memory of the allocator to the kernel.
        #[cfg(target_env = "gnu")]
        unsafe {
            libc::malloc_trim(0);
        }
        released
    }

    /// Below the stack pointer, the main thread's stack holds nothing (the deep calls of
    /// startup have returned), but its pages stay resident: drop them, keeping a margin
    /// (the red zone and more). Only when called on the main thread, whose stack is the
    /// `[stack]` mapping.
    fn release_unused_stack() {
        const MARGIN: usize = 64 * 1024;
        let here = 0u8;
        let sp = std::hint::black_box(&here) as *const u8 as usize;
        let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else { return };
        let Some(range) = maps.lines().find(|l| l.ends_with("[stack]")).and_then(|l| l.split_whitespace().next())
        else {
            return;
        };
        let Some((Ok(start), Ok(end))) =
            range.split_once('-').map(|(a, b)| (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16)))
        else {
            return;
        };
        if !(start..end).contains(&sp) {
            return;
        }
        let top = sp.saturating_sub(MARGIN) & !(page_size() - 1);
        if top > start {
            // SAFETY: [start, top) lies below this frame's stack pointer by more than the
            // margin, on this thread's own stack: nothing live is there, and the pages read
            // back as zeros if the stack grows into them again.
            unsafe {
                libc::madvise(start as *mut libc::c_void, top - start, libc::MADV_DONTNEED);
            }
        }
    }

    /// The system's page size.
    pub(super) fn page_size() -> usize {
        // SAFETY: sysconf only reads a system constant.
        match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
            size if size > 0 => size as usize,
            _ => 4096,
        }
    }

    /// The read-only, file-backed mappings without pages of their own, from `/proc/self/smaps`.
    fn read_only_file_mappings() -> Vec<(usize, usize)> {
        let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") else { return Vec::new() };
        let mut found = Vec::new();
        let mut candidate: Option<(usize, usize)> = None;
        for line in smaps.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            match fields[..] {
                // A mapping's header: start-end perms offset dev inode [path].
                [range, perms, _offset, _dev, inode, path, ..] if range.contains('-') && !range.ends_with(':') => {
                    // Read-only and file-backed only: [vdso] and other pseudo-mappings have inode 0.
                    let read_only = perms == "r-xp" || perms == "r--p";
                    candidate = (read_only && inode != "0" && !path.starts_with('['))
                        .then(|| range.split_once('-'))
                        .flatten()
                        .and_then(|(a, b)| {
                            Some((usize::from_str_radix(a, 16).ok()?, usize::from_str_radix(b, 16).ok()?))
                        });
                }
                [header, ..] if header.contains('-') && !header.ends_with(':') => candidate = None,
                // A mapping patched in memory (relocated data made read-only again, text
                // relocations, a debugger's breakpoints) has copied pages of its own, which
                // would be lost: it is left alone. The field comes before VmFlags, the last.
                ["Anonymous:", kib, ..] if kib != "0" => candidate = None,
                ["VmFlags:", ..] => found.extend(candidate.take()),
                _ => {}
            }
        }
        found
    }

    /// Cuts a mapping into one-page mappings, without read-around. A page fault maps more
    /// than the page it needs: the neighbours already in the page cache (fault-around,
    /// 64 KiB), and in executable mappings the kernel reads ahead to the end of the mapping
    /// whatever `MADV_RANDOM` says (Linux 6.16 and later). Both stop at the end of the
    /// mapping, so in a mapping cut into pages a fault maps that page alone, and what stays
    /// resident is what runs. The cut is made by giving every other page a flag the kernel
    /// will not merge across: `MADV_NOHUGEPAGE`, which only keeps those pages from being
    /// gathered into a huge page (which would map more, not less); on a kernel without huge
    /// pages the call fails and the mapping stays whole (whether it was cut is returned).
    /// Each piece costs the kernel a mapping record (about 200 bytes of kernel memory, not
    /// counted in RSS).
    pub(super) fn cut_into_pages(start: usize, end: usize, page: usize) -> bool {
        // SAFETY: flags only, of a read-only file mapping of this process: its contents do
        // not change. No read-around: a page used later is read alone, not with its
        // neighbours.
        unsafe {
            libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_RANDOM);
        }
        let mut cut = true;
        let mut at = start + page;
        while at < end {
            // SAFETY: as above.
            cut &= unsafe { libc::madvise(at as *mut libc::c_void, page, libc::MADV_NOHUGEPAGE) } == 0;
            at += 2 * page;
        }
        cut
    }

    /// Pages out and unmaps a private, read-only file mapping with no page of its own.
    /// Paging out frees the page cache too, but only of a file the process may write (the
    /// kernel's rule); the pages that stay are unmapped all the same.
    ///
    /// # Safety
    /// `[start, end)` must be such a mapping: then no data is lost, and any page used
    /// afterwards is mapped back from the page cache or read from the file.
    pub(super) unsafe fn unmap(start: usize, end: usize) -> bool {
        let at = start as *mut libc::c_void;
        let out = libc::madvise(at, end - start, libc::MADV_PAGEOUT) == 0;
        libc::madvise(at, end - start, libc::MADV_DONTNEED) == 0 || out
    }

    fn release_code() -> u64 {
        let page = page_size();
        let mappings = read_only_file_mappings();
        // First the cut, so that the code that runs from here on (this function's too)
        // brings back single pages, not their neighbours.
        for &(start, end) in &mappings {
            cut_into_pages(start, end, page);
        }
        let mut released = 0;
        for &(start, end) in &mappings {
            // SAFETY: read_only_file_mappings lists only such mappings of this process.
            if unsafe { unmap(start, end) } {
                released += (end - start) as u64;
            }
        }
        released
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::imp::{cut_into_pages, page_size, unmap};

    /// The mappings of /proc/self/maps that start in `[start, end)`: how many, and their
    /// resident KiB.
    fn mappings_in(start: usize, end: usize) -> (usize, u64) {
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let (mut count, mut rss, mut inside) = (0, 0, false);
        for line in smaps.lines() {
            let first = line.split_whitespace().next().unwrap_or("");
            if let Some((a, _)) = first.split_once('-').filter(|_| !first.ends_with(':')) {
                let at = usize::from_str_radix(a, 16).unwrap();
                inside = (start..end).contains(&at);
                count += usize::from(inside);
            } else if let (true, Some(kib)) = (inside, line.strip_prefix("Rss:")) {
                rss += kib.trim().trim_end_matches("kB").trim().parse::<u64>().unwrap();
            }
        }
        (count, rss)
    }

    /// A read-only file mapping cut into pages and unmapped maps back only the page that is
    /// read, not its cached neighbours, and every page still reads its file's contents (on a
    /// kernel without transparent huge pages: the cut is refused and the mapping still reads).
    #[test]
    fn a_cut_mapping_maps_back_only_the_pages_read() {
        const PAGES: usize = 16;
        let page = page_size();
        let path = std::env::temp_dir().join(format!("kadmos-cut-{}", std::process::id()));
        let contents: Vec<u8> = (0..PAGES * page).map(|i| (i / page) as u8 + 1).collect();
        std::fs::write(&path, &contents).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        let len = PAGES * page;
        // SAFETY: a fresh private read-only mapping of a file this test owns.
        let at = unsafe {
            use std::os::fd::AsRawFd;
            libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ, libc::MAP_PRIVATE, file.as_raw_fd(), 0)
        };
        assert_ne!(at, libc::MAP_FAILED);
        let (start, end) = (at as usize, at as usize + len);
        // SAFETY: the mapping is `len` readable bytes.
        let mapped = unsafe { std::slice::from_raw_parts(at as *const u8, len) };
        assert_eq!(mapped, &contents[..], "the whole file is read, so all of it is in the page cache");

        // The cut needs a kernel with transparent huge pages (it marks every other page
        // `MADV_NOHUGEPAGE`); without them the kernel refuses, and the mapping stays whole.
        let cut = cut_into_pages(start, end, page);
        if !std::path::Path::new("/sys/kernel/mm/transparent_hugepage").exists() {
            assert!(!cut, "a kernel without transparent huge pages takes no such flag");
            assert_eq!(mapped, &contents[..], "the mapping left whole still reads its file");
            // SAFETY: unmapping this test's own mapping, which is not used afterwards.
            unsafe { libc::munmap(at, len) };
            let _ = std::fs::remove_file(&path);
            return;
        }
        assert!(cut, "the kernel takes the flags");
        // SAFETY: a private read-only file mapping without pages of its own.
        assert!(unsafe { unmap(start, end) });
        assert_eq!(mappings_in(start, end), (PAGES, 0), "one mapping per page, none resident");

        assert_eq!(std::hint::black_box(mapped[5 * page + 7]), 6);
        assert_eq!(mappings_in(start, end), (PAGES, page as u64 / 1024), "only the page read is mapped");
        assert_eq!(mapped, &contents[..], "every page reads back its contents");

        // SAFETY: unmapping this test's own mapping, which is not used afterwards.
        unsafe { libc::munmap(at, len) };
        let _ = std::fs::remove_file(&path);
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    pub fn release() -> u64 {
        0
    }
}
