//! Gives back the memory a daemon needed only to start.
//!
//! Parsing the command line, reading the state, binding sockets, joining the network and
//! setting up the control API run code and allocate memory that an idle node never touches
//! again, yet both stay resident: the code because the kernel maps an executable's pages
//! around each fault and keeps them mapped, the memory because malloc keeps freed heap.
//! Once the node has joined, the daemon unmaps its code pages (they are read-only views of
//! the executable and its libraries, so nothing is lost: what runs later faults back in from
//! the page cache) and returns freed heap to the kernel. Only code mappings (`r-xp`, backed
//! by a file) are touched; data, relocated or not, stays as it is.

/// Releases startup pages (Linux; elsewhere it does nothing). Returns the bytes of code
/// mappings released, for the log.
pub fn release() -> u64 {
    imp::release()
}

#[cfg(target_os = "linux")]
mod imp {
    pub fn release() -> u64 {
        let released = release_code();
        // Last, once the smaps text read below is freed too.
        // SAFETY: malloc_trim only returns free memory of the allocator to the kernel.
        #[cfg(target_env = "gnu")]
        unsafe {
            libc::malloc_trim(0);
        }
        released
    }

    fn release_code() -> u64 {
        let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") else { return 0 };
        let mut released = 0;
        let mut candidate: Option<(usize, usize)> = None;
        for line in smaps.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            match fields[..] {
                // A mapping's header: start-end perms offset dev inode [path].
                [range, perms, _offset, _dev, inode, path, ..] if range.contains('-') && !range.ends_with(':') => {
                    // File-backed code only: [vdso] and other pseudo-mappings have inode 0.
                    candidate = (perms == "r-xp" && inode != "0" && !path.starts_with('['))
                        .then(|| range.split_once('-'))
                        .flatten()
                        .and_then(|(a, b)| {
                            Some((usize::from_str_radix(a, 16).ok()?, usize::from_str_radix(b, 16).ok()?))
                        });
                }
                [header, ..] if header.contains('-') && !header.ends_with(':') => candidate = None,
                // Code patched in memory (text relocations, a debugger's breakpoints) has
                // copied pages of its own, which would be lost: such a mapping is left alone.
                // The field comes before VmFlags, the last.
                ["Anonymous:", kib, ..] if kib != "0" => candidate = None,
                ["VmFlags:", ..] => {
                    if let Some((start, end)) = candidate.take() {
                        // SAFETY: a private, read-only, executable file mapping of this process
                        // with no page of its own: MADV_DONTNEED drops no data, and any page
                        // used afterwards (this function's too) is read back from the file.
                        let done =
                            unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED) };
                        if done == 0 {
                            released += (end - start) as u64;
                        }
                    }
                }
                _ => {}
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
