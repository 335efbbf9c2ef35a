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
    fn page_size() -> usize {
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

    /// Splits a mapping into one-page pieces. A page fault maps more than the page it needs:
    /// the neighbours already in the page cache (fault-around, 64 KiB), and in executable
    /// mappings the kernel reads ahead to the end of the mapping whatever `MADV_RANDOM` says
    /// (Linux 6.16 and later). Both stop at the end of the mapping, so in a mapping cut into
    /// pages a fault maps that page alone, and what stays resident is what runs. The cut
    /// is made by giving every other page a flag the kernel will not merge across:
    /// `MADV_NOHUGEPAGE`, which only keeps those pages from being gathered into a huge page
    /// (which would map more, not less); on a kernel without huge pages the call fails and
    /// the mapping stays whole. Each piece costs the kernel a
    /// mapping record (about 200 bytes of kernel memory, not counted in RSS).
    fn split_into_pages(start: usize, end: usize, page: usize) {
        let mut at = start + page;
        while at < end {
            // SAFETY: only flags of a read-only file mapping of this process change; its
            // contents do not.
            unsafe {
                libc::madvise(at as *mut libc::c_void, page, libc::MADV_NOHUGEPAGE);
            }
            at += 2 * page;
        }
    }

    fn release_code() -> u64 {
        let page = page_size();
        let mappings = read_only_file_mappings();
        // First the cut (and no read-around), so that the code that runs from here on
        // brings back single pages, not their neighbours.
        for &(start, end) in &mappings {
            // SAFETY: flags only: no read-around for a page used later (read alone, not
            // with its neighbours, which would be mapped along with it).
            unsafe {
                libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_RANDOM);
            }
            split_into_pages(start, end, page);
        }
        let mut released = 0;
        for &(start, end) in &mappings {
            let at = start as *mut libc::c_void;
            // SAFETY: a private, read-only file mapping of this process with no page of its
            // own: paging it out loses no data, and any page used afterwards (this
            // function's too) is read back from the file. Paging out frees the page cache
            // too, but only of a file the process may write (the kernel's rule); the pages
            // that stay are unmapped all the same.
            let done = unsafe {
                let out = libc::madvise(at, end - start, libc::MADV_PAGEOUT) == 0;
                libc::madvise(at, end - start, libc::MADV_DONTNEED) == 0 || out
            };
            if done {
                released += (end - start) as u64;
            }
        }
        released
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    pub fn release() -> u64 {
        0
    }
}
