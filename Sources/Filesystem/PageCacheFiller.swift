// Segment fill: a small read decrypts whole ciphertext segments (16 KiB by default), but the
// kernel asked for a few pages of them. The other pages of those segments are authenticated
// plaintext already in hand; this puts them into the kernel's page cache of the file
// (FUSE_NOTIFY_STORE), so a later read of them costs no round trip, no fetch and no decrypt.
// docs/semantics.md (read, "Segment fill") has the rules; docs/performance.md the figures.
internal import CFuse
import Envelope
import Foundation
import Logging
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Stores pages into the kernel's page cache, from a thread of its own (segment fill) or,
/// for open fill, from an OPEN handler.
///
/// Not from a READ handler: FUSE_NOTIFY_STORE locks each page it fills, and a page can be
/// locked by a read the kernel has queued for a worker; a worker blocked there could wait on
/// itself. The filler thread only waits for reads that free workers will answer; open fill
/// stores only while no handle of the inode exists in the kernel (none was open, and a
/// concurrent OPEN of it waits for the fill before it replies), so no read is in flight.
///
/// Lease safety: every store happens under the read side of `storeLock` after checking
/// `stopped`; `stop()` sets `stopped`, then takes the write side, so it returns only after
/// every store in progress is done. A mount whose lease lapses stops the filler *before* it
/// drops the kernel's caches, so no page stored before the drop survives it and none is
/// stored after.
final class PageCacheFiller: @unchecked Sendable {
    struct Item: @unchecked Sendable {  // owns `bytes` (moved through the queue)
        let ino: UInt64
        let offset: Int64
        let bytes: UnsafeMutableRawBufferPointer
    }

    private let session: OpaquePointer
    private let logger: Logger
    /// Queued items and their bytes; `stopped` ends the thread and refuses new items.
    private let lock = Mutex<(items: [Item], bytes: Int, stopped: Bool)>(([], 0, false))
    /// Read-held around each store, write-taken by `stop()` (see the type's comment). glibc's
    /// default rwlock prefers readers: a waiting `stop()` never blocks a store that a READ
    /// handler's reply would let finish.
    private let storeLock: UnsafeMutablePointer<pthread_rwlock_t> = {
        let p = UnsafeMutablePointer<pthread_rwlock_t>.allocate(capacity: 1)
        pthread_rwlock_init(p, nil)
        return p
    }()
    private let wake = DispatchSemaphore(value: 0)
    private let done = DispatchSemaphore(value: 0)
    /// Plaintext waiting to be stored is bounded: items past it are dropped (an optimization only).
    let maxQueuedBytes: Int
    let stored = Atomic<UInt64>(0)
    let dropped = Atomic<UInt64>(0)

    init(session: OpaquePointer, maxQueuedBytes: Int = 8 << 20, logger: Logger) {
        self.session = session
        self.maxQueuedBytes = maxQueuedBytes
        self.logger = logger
        let t = Thread { [self] in run() }
        t.name = "cce4fs-fill"
        t.start()
    }

    /// Queues a copy of `bytes` for `ino` at `offset` (page-aligned; the end is page-aligned
    /// or the end of the file). Returns false if it was dropped.
    @discardableResult
    func enqueue(ino: UInt64, offset: Int64, _ bytes: UnsafeRawBufferPointer) -> Bool {
        guard bytes.count > 0 else { return true }
        let copy = UnsafeMutableRawBufferPointer.allocate(byteCount: bytes.count, alignment: 16)
        copy.copyMemory(from: bytes)
        let item = Item(ino: ino, offset: offset, bytes: copy)
        let queued = lock.withLock { s -> Bool in
            guard !s.stopped, s.bytes + bytes.count <= maxQueuedBytes else { return false }
            s.items.append(item); s.bytes += bytes.count
            return true
        }
        guard queued else {
            Self.free(item)
            dropped.add(1, ordering: .relaxed)
            return false
        }
        wake.signal()
        return true
    }

    /// Stops storing: drops what is queued, waits for a store in progress, ends the thread.
    /// After it returns, no page is stored any more. Idempotent.
    func stop() {
        let (items, first) = lock.withLock { s -> ([Item], Bool) in
            defer { s.items.removeAll(); s.bytes = 0; s.stopped = true }
            return (s.items, !s.stopped)
        }
        items.forEach(Self.free)
        // Every store in progress finishes before this returns.
        pthread_rwlock_wrlock(storeLock); pthread_rwlock_unlock(storeLock)
        if first { wake.signal(); done.wait() }
    }

    /// Open fill: stores `bytes` for `ino` at `offset` now, on the calling thread. Only for an
    /// inode no open handle reads (see the type's comment). False if stopped or refused.
    func storeNow(ino: UInt64, offset: Int64, _ bytes: UnsafeRawBufferPointer) -> Bool {
        pthread_rwlock_rdlock(storeLock)
        defer { pthread_rwlock_unlock(storeLock) }
        guard !lock.withLock({ $0.stopped }) else { return false }
        return store(ino: ino, offset: offset, bytes)
    }

    /// One FUSE_NOTIFY_STORE, counted; the caller holds the read side of `storeLock`.
    @discardableResult
    private func store(ino: UInt64, offset: Int64, _ bytes: UnsafeRawBufferPointer) -> Bool {
        let rc = cce4_notify_store(session, fuse_ino_t(ino), off_t(offset), bytes.baseAddress, bytes.count)
        // -ENOENT: the kernel forgot the inode meanwhile; nothing to fill.
        if rc == 0 { stored.add(1, ordering: .relaxed) } else if rc != -ENOENT {
            logger.debug("page cache fill refused", metadata: ["errno": "\(-rc)"])
        }
        return rc == 0
    }

    private static func free(_ item: Item) {
        secureWipe(item.bytes)
        item.bytes.deallocate()
    }

    private func run() {
        while true {
            wake.wait()
            pthread_rwlock_rdlock(storeLock)
            let next = lock.withLock { s -> (Item?, Bool) in
                if s.stopped { return (nil, true) }
                guard !s.items.isEmpty else { return (nil, false) }
                let item = s.items.removeFirst()
                s.bytes -= item.bytes.count
                return (item, false)
            }
            if let item = next.0 {
                store(ino: item.ino, offset: item.offset, UnsafeRawBufferPointer(item.bytes))
                pthread_rwlock_unlock(storeLock)
                Self.free(item)
            } else {
                pthread_rwlock_unlock(storeLock)
                if next.1 { done.signal(); return }
            }
        }
    }

    deinit {
        stop()
        pthread_rwlock_destroy(storeLock)
        storeLock.deallocate()
    }
}

/// The page-aligned part of the segments a read of `range` decrypts, within the file:
/// what a segment fill can add around the request. Nil when there is nothing to add.
func segmentFillRange(_ range: Range<Int64>, fileSize: Int64, parameters p: StreamParameters, page: Int64 = 4096) -> Range<Int64>? {
    let r = range.clamped(to: 0..<fileSize)
    guard !r.isEmpty else { return nil }
    let first = p.segmentIndex(plaintextOffset: r.lowerBound)
    let last = p.segmentIndex(plaintextOffset: r.upperBound - 1)
    let segStart = p.plaintextStart(segment: first)
    let segEnd = min(fileSize, p.plaintextStart(segment: last + 1))
    // Whole pages only: a partial page is stored only where the file ends.
    let lo = (segStart + page - 1) / page * page
    let hi = segEnd == fileSize ? fileSize : segEnd / page * page
    let fill = min(lo, r.lowerBound)..<max(hi, r.upperBound)
    return fill == r ? nil : fill
}
