// The thin FUSE adapter: maps libfuse low-level requests onto DatasetFS and replies.
// No semantics here (mountpoint-s3's fuse.rs over S3Filesystem).
internal import CFuse
import Dataset
import Envelope
import Foundation
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// A FUSE request that must be answered exactly once: every reply is `consuming`, and a
/// request dropped without a reply answers EIO from `deinit` (and that is a bug to fix).
struct Request: ~Copyable {
    let req: fuse_req_t

    init(_ req: fuse_req_t) { self.req = req }

    consuming func error(_ e: Int32) { fuse_reply_err(req, e); discard self }
    consuming func ok() { fuse_reply_err(req, 0); discard self }
    consuming func none() { fuse_reply_none(req); discard self }

    consuming func entry(_ a: Attributes, _ o: FSOptions) {
        var e = entryParam(a, o)
        fuse_reply_entry(req, &e)
        discard self
    }

    /// A cacheable "no such entry" (ino 0 with an entry timeout).
    consuming func negativeEntry(_ o: FSOptions) {
        var e = fuse_entry_param()
        e.ino = 0
        e.entry_timeout = o.entryTimeout
        fuse_reply_entry(req, &e)
        discard self
    }

    consuming func attr(_ a: Attributes, _ o: FSOptions) {
        var st = statOf(a)
        fuse_reply_attr(req, &st, o.attrTimeout)
        discard self
    }

    consuming func buffer(_ p: UnsafeRawPointer?, _ n: Int) {
        fuse_reply_buf(req, p?.assumingMemoryBound(to: CChar.self), n)
        discard self
    }

    /// Returns fuse_reply_open's result: non-zero means the kernel never got the handle.
    @discardableResult
    consuming func open(_ fi: UnsafeMutablePointer<fuse_file_info>) -> Int32 {
        let rc = fuse_reply_open(req, fi)
        discard self
        return rc
    }

    consuming func readlink(_ target: [UInt8]) {
        (target + [0]).withUnsafeBufferPointer { p in
            p.withMemoryRebound(to: CChar.self) { _ = fuse_reply_readlink(req, $0.baseAddress) }
        }
        discard self
    }

    consuming func statfs(_ s: inout statvfs) { fuse_reply_statfs(req, &s); discard self }
    consuming func xattrSize(_ n: Int) { fuse_reply_xattr(req, n); discard self }

    deinit { fuse_reply_err(req, EIO) }
}

/// The entry lookup and readdirplus both send. One generation for every inode (numbers are
/// never reused within a version): a mismatch makes the kernel drop the inode's cache.
func entryParam(_ a: Attributes, _ o: FSOptions) -> fuse_entry_param {
    var e = fuse_entry_param()
    e.ino = a.ino
    e.generation = 1
    e.attr = statOf(a)
    e.attr_timeout = o.attrTimeout
    e.entry_timeout = o.entryTimeout
    return e
}

func statOf(_ a: Attributes) -> stat {
    var st = stat()
    st.st_ino = UInt(a.ino)
    st.st_mode = a.mode
    st.st_nlink = UInt(a.nlink)
    st.st_size = Int(a.size)
    st.st_uid = a.uid
    st.st_gid = a.gid
    st.st_blksize = Int(a.blockSize)
    st.st_blocks = Int((a.size + 511) / 512)
    let t = timespec(tv_sec: Int(a.mtimeSeconds), tv_nsec: Int(a.mtimeNanoseconds))
    st.st_mtim = t; st.st_atim = t; st.st_ctim = t
    return st
}

/// A growable buffer, wiped when it grows or is freed.
final class Region {
    var pointer: UnsafeMutableRawPointer
    var capacity: Int
    init(_ n: Int) { pointer = .allocate(byteCount: n, alignment: 4096); capacity = n }
    deinit { secureWipe(UnsafeMutableRawBufferPointer(start: pointer, count: capacity)); pointer.deallocate() }

    func ensure(_ n: Int) -> UnsafeMutableRawBufferPointer {
        if n > capacity {
            secureWipe(UnsafeMutableRawBufferPointer(start: pointer, count: capacity))
            pointer.deallocate()
            capacity = max(n, capacity * 2)
            pointer = .allocate(byteCount: capacity, alignment: 4096)
        }
        return UnsafeMutableRawBufferPointer(start: pointer, count: n)
    }
}

/// Per-thread buffers for read replies (plaintext) and the ciphertext they decrypt from:
/// FUSE worker threads reuse them, so the read path does not allocate once warm.
final class ThreadBuffer {
    let reply = Region(1 << 20)
    let cipher = Region(1 << 20)

    static let key: pthread_key_t = {
        var k = pthread_key_t()
        pthread_key_create(&k) { p in if let p { Unmanaged<ThreadBuffer>.fromOpaque(p).release() } }
        return k
    }()

    static func current() -> ThreadBuffer {
        if let p = pthread_getspecific(key) { return Unmanaged<ThreadBuffer>.fromOpaque(p).takeUnretainedValue() }
        let b = ThreadBuffer()
        pthread_setspecific(key, Unmanaged.passRetained(b).toOpaque())
        return b
    }
}

/// A mounted FUSE session over a DatasetFS.
public final class FuseSession: @unchecked Sendable {
    public let fs: DatasetFS
    let logger: Logger
    private var session: OpaquePointer?
    /// Whether small reads fill the rest of their segments into the page cache (`-o
    /// segment_fill`); set before `mount`.
    public var segmentFill = true
    /// Open fill: files of at most this many bytes are decrypted whole when opened with no
    /// other handle open, and put into the page cache before the OPEN reply, so reading them
    /// costs no READ round trip (`-o open_fill`; 0 turns it off); set before `mount`.
    public var openFillMax = 128 << 10
    /// How long at most, in microseconds, a thread that served a request polls for the next
    /// one before it sleeps (`-o spin`): the leader of cce4fs's own loop on /dev/fuse (for an
    /// adaptive time up to it), or each ring worker with FUSE over io_uring; 0: libfuse's loop,
    /// or ring workers that sleep at once. Set before `run`.
    public var spinMicroseconds = FuseSession.defaultSpinMicroseconds
    public static let defaultSpinMicroseconds = 50
    /// How requests reach cce4fs (`-o uring`): FUSE over io_uring (`on`: or fail; `auto`: when
    /// the kernel allows it) or /dev/fuse (`off`, the default); set before `run`.
    public enum UringMode: String, Sendable { case auto, on, off }
    public var uring = UringMode.off
    /// Why this kernel does not allow FUSE over io_uring, and how to change that; nil if it does.
    public static var uringUnavailable: String? {
        switch cce4_uring_kernel_enabled() {
        case 1: return nil
        case 0: return "the kernel has FUSE over io_uring turned off: as root run 'echo 1 > /sys/module/fuse/parameters/enable_uring' (or boot with fuse.enable_uring=1)"
        default: return "this kernel has no FUSE over io_uring (it needs Linux 6.14 or later)"
        }
    }
    /// The io_uring transport while it runs.
    private var ring: OpaquePointer?
    /// The page filler (segment and open fill), while mounted with either on.
    private(set) var filler: PageCacheFiller?
    /// Open handles per inode; the inodes whose pages open fill has stored (not stored again
    /// until the kernel forgets the inode: later opens find the pages cached); the inodes
    /// being filled now. Under `fillCondition`.
    private var fillState = (open: [UInt64: Int](), filled: Set<UInt64>(), filling: Set<UInt64>())
    private let fillCondition = NSCondition()
    private var mounted = false
    /// Signalled when FUSE INIT has been handled (its reply follows at once).
    public let initialized = DispatchSemaphore(value: 0)

    public init(fs: DatasetFS, logger: Logger) {
        self.fs = fs
        self.logger = logger
    }

    /// Creates the session with `args` (libfuse options such as ["-o", "ro,allow_other"])
    /// and mounts it at `mountpoint`. Signal handlers (SIGINT, SIGTERM, SIGHUP) end the loop.
    public func mount(at mountpoint: String, args: [String]) throws(FSError) {
        var ops = Self.operations()
        let argv = (["cce4fs"] + args).map { strdup($0) }
        defer { argv.forEach { free($0) } }
        var cargv = argv.map { UnsafeMutablePointer<CChar>($0) }
        let se = cargv.withUnsafeMutableBufferPointer { p in
            cce4_fuse_session_new(Int32(p.count), p.baseAddress, &ops, Unmanaged.passUnretained(self).toOpaque())
        }
        guard let se else { throw FSError(EINVAL, "libfuse refused the mount options \(args.joined(separator: " "))") }
        session = se
        guard fuse_set_signal_handlers(se) == 0 else { throw FSError(EIO, "cannot install signal handlers") }
        guard fuse_session_mount(se, mountpoint) == 0 else {
            throw FSError(EIO, "cannot mount at \(mountpoint) (is it an existing, empty directory? is /dev/fuse there? run as root or install fuse3)")
        }
        mounted = true
        if segmentFill || openFillMax > 0 { filler = PageCacheFiller(session: se, logger: logger) }
    }

    /// For a handler about to block on the store: the request loop lets another worker read
    /// requests meanwhile (a no-op outside cce4fs's own loop).
    public static func willBlock() { cce4_loop_handoff() }

    /// Serves requests on up to `threads` worker threads until unmounted or signalled.
    /// Returns 0 (unmounted), the stop signal's number, or -errno.
    public func run(threads: Int) -> Int32 {
        guard let se = session else { return -1 }
        if let failed = startUring(threads: threads) { return failed }
        if let ring {
            // The rings carry every request but INIT, FORGET and INTERRUPT: libfuse's loop
            // keeps reading /dev/fuse for those (two threads are plenty).
            let rc = cce4_fuse_loop_mt(se, 2, 1, 0)
            let error = cce4_uring_error(ring)
            stopUring()
            return error != 0 ? error : rc
        }
        if spinMicroseconds > 0 {
            var stats = cce4_loop_stats()
            let rc = cce4_fuse_loop_spin(se, UInt32(threads), UInt32(spinMicroseconds), &stats)
            if rc != 0 { logger.error("the request loop failed", metadata: ["errno": "\(-rc)"]) }
            logger.info("request loop ended", metadata: ["handoffs_lazy": "\(stats.handoffs_lazy)", "handoffs_eager": "\(stats.handoffs_eager)",
                                                         "steals": "\(stats.steals)"])
            return rc
        }
        return cce4_fuse_loop_mt(se, UInt32(threads), UInt32(max(1, threads / 2)), 0)
    }

    /// Starts FUSE over io_uring when `uring` asks for it and the kernel allows it. With
    /// `auto`, requests stay on /dev/fuse if it cannot start; with `on`, returns -errno.
    private func startUring(threads: Int) -> Int32? {
        guard let se = session, uring != .off else { return nil }
        if let why = Self.uringUnavailable {
            if uring == .on { logger.error("uring=on: \(why)"); return -EOPNOTSUPP }
            logger.info("requests come through /dev/fuse", metadata: ["reason": "\(why)"])
            return nil
        }
        let cpus = max(1, sysconf(Int32(_SC_NPROCESSORS_CONF)))
        let perQueue = max(1, (threads + cpus - 1) / cpus)
        // The kernel's payload size is max(max_write, max_pages pages): 1 MiB with libfuse's
        // buffer; a larger buffer is allowed, a smaller one refused.
        let payload = 1 << 20
        var error: Int32 = 0
        ring = cce4_uring_start(se, UInt32(perQueue), payload, UInt32(spinMicroseconds), &error)
        guard let ring else {
            let meta: Logger.Metadata = ["errno": "\(-error)", "error": "\(String(cString: strerror(-error)))"]
            if uring == .on { logger.error("uring=on: FUSE over io_uring could not start", metadata: meta); return error }
            logger.warning("FUSE over io_uring could not start; requests come through /dev/fuse", metadata: meta)
            return nil
        }
        logger.info("FUSE over io_uring started", metadata: ["queues": "\(cce4_uring_queues(ring))", "threads_per_queue": "\(perQueue)",
                                                            "spin_us": "\(spinMicroseconds)"])
        return nil
    }

    private func stopUring() {
        guard let ring else { return }
        cce4_uring_stop(ring)
        let served = cce4_uring_served(ring), used = cce4_uring_entries_used(ring), error = cce4_uring_error(ring)
        self.ring = nil
        if error != 0 {
            logger.error("FUSE over io_uring failed and ended the mount; mount with uring=off to use /dev/fuse", metadata: ["errno": "\(-error)", "error": "\(String(cString: strerror(-error)))", "served": "\(served)"])
        } else {
            logger.info("FUSE over io_uring stopped", metadata: ["served": "\(served)", "entries_used": "\(used)"])
        }
    }

    /// Drops the kernel's cached pages and attributes of every inode it knows
    /// (fuse_lowlevel_notify_inval_inode, off 0 len 0: all data): after a lease lapses, reads
    /// through descriptors opened earlier come back to the filesystem, which refuses them.
    /// Never call it from a request handler (the kernel may hold a lock the request waits on):
    /// cce4fs calls it from a thread of its own.
    public func invalidateKernelCaches() {
        guard let se = session else { return }
        // First stop storing pages: none stored before the drop survives it, none after.
        filler?.stop()
        var dropped = 0
        for ino in fs.knownInodes() where fuse_lowlevel_notify_inval_inode(se, fuse_ino_t(ino), 0, 0) == 0 { dropped += 1 }
        logger.notice("kernel caches dropped", metadata: ["inodes": "\(dropped)"])
    }

    /// Unmounts (if still mounted) and frees the session.
    public func close() {
        guard let se = session else { return }
        filler?.stop()
        fs.stopPrefetch()
        if mounted { fuse_session_unmount(se); mounted = false }
        fuse_remove_signal_handlers(se)
        fuse_session_destroy(se)
        session = nil
    }

    deinit { close() }

    /// Whether open fill applies to `file` (and so keeps count of its handles).
    private func openFillable(_ file: DatasetFile) -> Bool {
        filler != nil && file.size > 0 && file.size <= Int64(openFillMax)
    }

    /// A handle of `ino` was opened: the first one of a small file fills its pages (before
    /// the OPEN reply). A failed read is left for the READ that follows to report. Larger
    /// files take no lock here.
    ///
    /// While a fill of `ino` runs, no handle of it exists in the kernel: a concurrent OPEN of
    /// the same inode waits here until the fill ends, so no READ can lock a page the store
    /// is about to fill (see PageCacheFiller).
    func opened(_ ino: UInt64, _ file: DatasetFile) {
        guard openFillable(file), let filler else { return }
        fillCondition.lock()
        while fillState.filling.contains(ino) { fillCondition.wait() }
        let n = fillState.open[ino, default: 0]
        fillState.open[ino] = n + 1
        let first = n == 0 && !fillState.filled.contains(ino)
        if first { fillState.filling.insert(ino) }
        fillCondition.unlock()
        guard first else { return }
        var stored = false
        let tb = ThreadBuffer.current()
        let buf = tb.reply.ensure(Int(file.size))
        do {
            let n = try fs.read(file, offset: 0, into: buf, accounted: false) { need in tb.cipher.ensure(need) }
            if Int64(n) == file.size, filler.storeNow(ino: ino, offset: 0, UnsafeRawBufferPointer(rebasing: buf[0..<n])) {
                stored = true
                fs.served(file, bytes: n)
            }
        } catch {
            logger.debug("open fill skipped", metadata: ["errno": "\(error.errno)"])
        }
        fillCondition.lock()
        fillState.filling.remove(ino)
        if stored { fillState.filled.insert(ino) }
        fillCondition.broadcast()
        fillCondition.unlock()
    }

    /// A handle of `ino` was released (or its OPEN reply never reached the kernel).
    func released(_ ino: UInt64, _ file: DatasetFile) {
        guard openFillable(file) else { return }
        fillCondition.lock()
        if let n = fillState.open[ino], n > 1 { fillState.open[ino] = n - 1 } else { fillState.open[ino] = nil }
        fillCondition.unlock()
    }

    /// The kernel forgot `ino` (its page cache may be gone with it): a later open fills again.
    func forgot(_ ino: UInt64) {
        guard openFillMax > 0, filler != nil else { return }
        fillCondition.lock()
        fillState.filled.remove(ino)
        fillCondition.unlock()
    }

    // MARK: request plumbing

    static func bridge(_ req: fuse_req_t?) -> FuseSession {
        Unmanaged<FuseSession>.fromOpaque(fuse_req_userdata(req)!).takeUnretainedValue()
    }

    /// The one place errors become errnos on the wire; integrity and I/O causes are logged
    /// (object keys, never names or plaintext).
    func fail(_ r: consuming Request, _ error: any Error, _ op: String) {
        let e = FSError.from(error)
        if e.isAlarming {
            logger.warning("\(op) failed", metadata: ["errno": "\(e.errno)", "cause": "\(e.cause)"])
        } else {
            logger.debug("\(op) failed", metadata: ["errno": "\(e.errno)", "cause": "\(e.cause)"])
        }
        r.error(e.errno)
    }

    static func name(_ p: UnsafePointer<CChar>?) -> [UInt8] {
        guard let p else { return [] }
        return Array(UnsafeRawBufferPointer(start: p, count: strlen(p)))
    }

    static func operations() -> fuse_lowlevel_ops {
        var ops = fuse_lowlevel_ops()
        ops.`init` = { userdata, conn in
            guard let conn else { return }
            // Immutable snapshot: no need to invalidate cached pages on attribute changes.
            conn.pointee.want &= ~UInt32(FUSE_CAP_AUTO_INVAL_DATA)
            for cap in [FUSE_CAP_READDIRPLUS, FUSE_CAP_ASYNC_READ, FUSE_CAP_PARALLEL_DIROPS, FUSE_CAP_CACHE_SYMLINKS] {
                if conn.pointee.capable & UInt32(cap) != 0 { conn.pointee.want |= UInt32(cap) }
            }
            conn.pointee.want &= ~UInt32(FUSE_CAP_READDIRPLUS_AUTO)
            if let userdata {
                let s = Unmanaged<FuseSession>.fromOpaque(userdata).takeUnretainedValue()
                s.logger.info("FUSE session ready", metadata: ["proto": "\(conn.pointee.proto_major).\(conn.pointee.proto_minor)",
                                                            "max_readahead": "\(conn.pointee.max_readahead)", "max_read": "\(conn.pointee.max_read)"])
                s.initialized.signal()
            }
        }
        ops.lookup = { req, parent, name in
            let s = FuseSession.bridge(req), r = Request(req!)
            let result: Result<Attributes, FSError>
            do throws(FSError) { result = .success(try s.fs.lookup(parent: parent, name: FuseSession.name(name))) } catch { result = .failure(error) }
            switch result {
            case .success(let a): r.entry(a, s.fs.options)
            // The snapshot is immutable: let the kernel cache the miss too.
            case .failure(let e) where e.errno == ENOENT: r.negativeEntry(s.fs.options)
            case .failure(let e): s.fail(r, e, "lookup")
            }
        }
        ops.forget = { req, ino, n in
            let s = FuseSession.bridge(req)
            s.fs.forget(ino, count: n)
            s.forgot(ino)
            Request(req!).none()
        }
        ops.forget_multi = { req, count, forgets in
            let s = FuseSession.bridge(req)
            for i in 0..<count { if let f = forgets?[i] { s.fs.forget(f.ino, count: f.nlookup); s.forgot(f.ino) } }
            Request(req!).none()
        }
        ops.getattr = { req, ino, _ in
            let s = FuseSession.bridge(req), r = Request(req!)
            let result: Result<Attributes, FSError>
            do throws(FSError) { result = .success(try s.fs.getattr(ino)) } catch { result = .failure(error) }
            switch result {
            case .success(let a): r.attr(a, s.fs.options)
            case .failure(let e): s.fail(r, e, "getattr")
            }
        }
        ops.readlink = { req, ino in
            let s = FuseSession.bridge(req), r = Request(req!)
            do { let t = try s.fs.readlink(ino); r.readlink(t) } catch { s.fail(r, error, "readlink") }
        }
        ops.open = { req, ino, fi in
            cce4_loop_handoff()  // reads the file's header (and, with open fill, all of it)
            let s = FuseSession.bridge(req), r = Request(req!)
            guard let fi else { r.error(EIO); return }
            do {
                let file = try s.fs.open(ino, flags: fi.pointee.flags)
                let handle = Unmanaged.passRetained(file)
                fi.pointee.fh = UInt64(UInt(bitPattern: handle.toOpaque()))
                // The snapshot never changes: keep cached pages across opens.
                cce4_fi_set_keep_cache(fi, 1)
                s.opened(ino, file)
                // If the reply did not reach the kernel, no RELEASE will come: drop it here.
                if r.open(fi) != 0 { s.fs.release(file); s.released(ino, file); handle.release() }
            } catch { s.fail(r, error, "open") }
        }
        ops.read = { req, ino, size, off, fi in
            cce4_loop_handoff()  // fetches and decrypts segments
            let s = FuseSession.bridge(req), r = Request(req!)
            guard let fi, let p = UnsafeRawPointer(bitPattern: UInt(fi.pointee.fh)) else { r.error(EBADF); return }
            let file = Unmanaged<DatasetFile>.fromOpaque(p).takeUnretainedValue()
            let tb = ThreadBuffer.current()
            let want = Int64(off)..<(Int64(off) + Int64(size))
            // Segment fill: a read covering only part of the segments it decrypts reads them whole,
            // answers its own pages and hands the others to the filler (page-aligned
            // requests only, as the kernel's buffered reads are).
            if s.segmentFill, let filler = s.filler, off >= 0, off % 4096 == 0, size % 4096 == 0,
               let fill = segmentFillRange(want, fileSize: file.size, parameters: file.parameters) {
                let buf = tb.reply.ensure(fill.count)
                do {
                    let n = try s.fs.read(file, offset: fill.lowerBound, into: buf) { need in tb.cipher.ensure(need) }
                    let head = Int(want.lowerBound - fill.lowerBound)
                    let count = max(0, min(size, n - head))
                    if head > 0 { filler.enqueue(ino: ino, offset: fill.lowerBound, UnsafeRawBufferPointer(rebasing: buf[0..<min(head, n)])) }
                    if head + count < n { filler.enqueue(ino: ino, offset: Int64(off) + Int64(count), UnsafeRawBufferPointer(rebasing: buf[(head + count)..<n])) }
                    r.buffer(buf.baseAddress! + min(head, n), count)
                } catch { s.fail(r, error, "read") }
                return
            }
            let buf = tb.reply.ensure(size)
            do {
                let n = try s.fs.read(file, offset: Int64(off), into: buf) { need in tb.cipher.ensure(need) }
                r.buffer(buf.baseAddress, n)
            } catch { s.fail(r, error, "read") }
        }
        ops.release = { req, ino, fi in
            if let fi, let p = UnsafeRawPointer(bitPattern: UInt(fi.pointee.fh)) {
                let handle = Unmanaged<DatasetFile>.fromOpaque(p)
                let s = FuseSession.bridge(req), file = handle.takeUnretainedValue()
                s.fs.release(file)
                s.released(ino, file)
                handle.release()
            }
            Request(req!).ok()
        }
        // No flush: libfuse answers ENOSYS once and the kernel stops sending FLUSH on close
        // (nothing to flush in a read-only snapshot): one round trip less per open file.
        ops.fsync = { req, _, _, _ in Request(req!).ok() }
        ops.opendir = { req, ino, fi in
            let s = FuseSession.bridge(req), r = Request(req!)
            guard let fi else { r.error(EIO); return }
            do {
                try s.fs.opendir(ino, flags: fi.pointee.flags)
                cce4_fi_set_keep_cache(fi, 1)
                cce4_fi_set_cache_readdir(fi, 1)
                r.open(fi)
            } catch { s.fail(r, error, "opendir") }
        }
        ops.readdir = { req, ino, size, off, _ in FuseSession.readdir(req, ino, size, off, plus: false) }
        ops.readdirplus = { req, ino, size, off, _ in FuseSession.readdir(req, ino, size, off, plus: true) }
        ops.releasedir = { req, _, _ in Request(req!).ok() }
        ops.fsyncdir = { req, _, _, _ in Request(req!).ok() }
        ops.statfs = { req, _ in
            let s = FuseSession.bridge(req)
            var st = statvfs()
            st.f_bsize = 4096; st.f_frsize = 4096
            st.f_files = UInt(s.fs.inodeCount)
            st.f_namemax = 255
            st.f_flag = UInt(ST_RDONLY)
            Request(req!).statfs(&st)
        }
        ops.access = { req, ino, mask in
            let s = FuseSession.bridge(req), r = Request(req!)
            do { try s.fs.access(ino, mask: mask); r.ok() } catch { s.fail(r, error, "access") }
        }
        ops.getxattr = { req, _, _, _ in Request(req!).error(ENODATA) }
        ops.listxattr = { req, _, size in
            let r = Request(req!)
            if size == 0 { r.xattrSize(0) } else { r.buffer(nil, 0) }
        }
        // Every write-like operation: the dataset is an immutable snapshot.
        ops.setattr = { req, _, _, _, _ in Request(req!).error(EROFS) }
        ops.mknod = { req, _, _, _, _ in Request(req!).error(EROFS) }
        ops.mkdir = { req, _, _, _ in Request(req!).error(EROFS) }
        ops.unlink = { req, _, _ in Request(req!).error(EROFS) }
        ops.rmdir = { req, _, _ in Request(req!).error(EROFS) }
        ops.symlink = { req, _, _, _ in Request(req!).error(EROFS) }
        ops.rename = { req, _, _, _, _, _ in Request(req!).error(EROFS) }
        ops.link = { req, _, _, _ in Request(req!).error(EROFS) }
        ops.write = { req, _, _, _, _, _ in Request(req!).error(EROFS) }
        ops.create = { req, _, _, _, _ in Request(req!).error(EROFS) }
        ops.setxattr = { req, _, _, _, _, _ in Request(req!).error(EROFS) }
        ops.removexattr = { req, _, _ in Request(req!).error(EROFS) }
        ops.fallocate = { req, _, _, _, _, _ in Request(req!).error(EROFS) }
        ops.copy_file_range = { req, _, _, _, _, _, _, _, _ in Request(req!).error(EROFS) }
        return ops
    }

    /// readdir and readdirplus: fill one reply buffer of at most `size` bytes.
    static func readdir(_ req: fuse_req_t?, _ ino: fuse_ino_t, _ size: Int, _ off: off_t, plus: Bool) {
        let s = bridge(req), r = Request(req!)
        let buf = UnsafeMutableRawPointer.allocate(byteCount: max(size, 1), alignment: 8)
        defer { buf.deallocate() }
        var used = 0
        let cbuf = buf.assumingMemoryBound(to: CChar.self)
        // One NUL-terminated name buffer for the whole reply (names are at most 255 bytes).
        let name = UnsafeMutablePointer<CChar>.allocate(capacity: DirectoryLimits.maxNameLength + 1)
        defer { name.deallocate() }
        do {
            try s.fs.readdir(ino, offset: Int(off), plus: plus) { item in
                item.name.withUnsafeBytes { UnsafeMutableRawPointer(name).copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
                name[item.name.count] = 0
                let need: Int
                if plus {
                    var e = entryParam(item.attributes, s.fs.options)
                    // "." and ".." take no lookup reference: ino 0 tells the kernel to skip them.
                    if item.name == [0x2e] || item.name == [0x2e, 0x2e] { e.ino = 0 }
                    need = fuse_add_direntry_plus(req, cbuf + used, size - used, name, &e, off_t(item.nextOffset))
                } else {
                    var st = statOf(item.attributes)
                    need = fuse_add_direntry(req, cbuf + used, size - used, name, &st, off_t(item.nextOffset))
                }
                guard need <= size - used else { return false }
                used += need
                return true
            }
            r.buffer(buf, used)
        } catch { s.fail(r, error, plus ? "readdirplus" : "readdir") }
    }
}
