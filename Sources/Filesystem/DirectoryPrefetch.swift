// Directory prefetch: once a program has opened several files of one directory (a data
// loader's epoch, `cat dir/*`, a checksum pass), the store objects of the directory's other
// small files are fetched ahead of their opens, in the background (docs/semantics.md).
import Dataset
import Dispatch
import Envelope
import Foundation
import Logging
import ObjectStore
import Synchronization

/// When and how much a directory's objects are fetched ahead.
public struct PrefetchOptions: Sendable, Equatable {
    /// Bytes of objects fetched ahead per directory scan (0 turns prefetch off).
    public var bytes: Int64 = 1 << 30
    /// Distinct files of one directory opened before the rest of it is fetched ahead.
    public var after: Int = 8
    /// Files whose object is larger than this are left to their own readahead.
    public var fileMax: Int64 = 1 << 20
    /// Objects per batch handed to the store; the lease and the stop flag are checked
    /// between batches.
    public var batch = 128
    /// Batches in flight at once (each may block on inode reads while it opens objects).
    public var lanes = 2
    public init() {}
}

/// Counts the distinct files opened per directory and, at the threshold, warms the store
/// objects of that directory's small files (`ObjectStore.warm`), once per directory while
/// the mount lives. Plaintext never enters this path: it only names ciphertext objects to
/// the store. Thread-safe.
final class DirectoryPrefetcher: Sendable {
    /// A directory being counted: the inodes opened so far (fewer than `after`), or done.
    enum Scan { case counting(Set<UInt64>), started }
    /// A directory whose prefetch is due: its hash and the files already opened (skipped).
    struct Job { let dir: SHA256Digest; let opened: Set<UInt64> }
    struct State {
        var scans = [SHA256Digest: Scan]()
        /// Directories waiting for the runner, oldest first (at most `queuedLimit`).
        var queue = [Job]()
        var running = false
        var stopped = false
    }

    let options: PrefetchOptions
    private let state = Mutex(State())
    /// Scans finished and objects and bytes handed to the store (tests, logs).
    private let totals = Mutex<(scans: Int, objects: Int, bytes: Int64)>((0, 0, 0))
    private let logger = Logger(label: "cce4fs.prefetch")
    /// Directories tracked at most; past it the table starts over (a directory may then be
    /// warmed twice, which costs a second pass of hints, nothing more).
    static let trackedLimit = 4096
    /// Directories waiting at most; past it the oldest waiting one is dropped (a loader that
    /// moved on from it does not need it).
    static let queuedLimit = 64

    init(options: PrefetchOptions) { self.options = options }

    var statistics: (scans: Int, objects: Int, bytes: Int64) { totals.withLock { $0 } }

    func stop() { state.withLock { $0.stopped = true; $0.queue.removeAll() } }

    private var stopped: Bool { state.withLock { $0.stopped } }

    /// `ino`, a file of directory `dir`, was opened; returns whether this open made the
    /// directory's prefetch due. One runner thread serves every directory in turn, so however
    /// many directories are scanned at once, prefetch uses at most 1 + `lanes` threads.
    @discardableResult
    func opened(_ ino: UInt64, in dir: SHA256Digest, fs: DatasetFS) -> Bool {
        let after = options.after
        let (due, startRunner): (Bool, Bool) = state.withLock { s in
            guard !s.stopped else { return (false, false) }
            var seen: Set<UInt64>
            switch s.scans[dir] {
            case .started?: return (false, false)
            case .counting(let known)?: seen = known
            case nil:
                if s.scans.count >= Self.trackedLimit { s.scans.removeAll() }
                seen = []
            }
            seen.insert(ino)
            guard seen.count >= after else { s.scans[dir] = .counting(seen); return (false, false) }
            s.scans[dir] = .started
            if s.queue.count >= Self.queuedLimit { s.queue.removeFirst() }
            s.queue.append(Job(dir: dir, opened: seen))
            guard !s.running else { return (true, false) }
            s.running = true
            return (true, true)
        }
        // A thread of its own: it blocks on the store, and waits for its lanes.
        if startRunner { Thread.detachNewThread { [self] in drain(fs) } }
        return due
    }

    /// The runner: serves queued directories until none is left.
    private func drain(_ fs: DatasetFS) {
        while let job = state.withLock({ s -> Job? in
            guard !s.stopped, !s.queue.isEmpty else { s.running = false; return nil }
            return s.queue.removeFirst()
        }) {
            run(job, fs: fs)
        }
    }

    /// The objects of `dir`'s small files stored as one object, in directory order, skipping
    /// the files in `opened` and any object that would take the total past the byte budget.
    func objects(of dir: SHA256Digest, skipping opened: Set<UInt64>, fs: DatasetFS) -> [(key: ObjectKey, size: Int64)] {
        guard let listing = try? fs.reader.directory(dir) else { return [] }
        var out = [(key: ObjectKey, size: Int64)]()
        var bytes: Int64 = 0
        for i in 0..<listing.count {
            guard let e = try? listing.entry(at: i), case .file(let f) = e.target, case .single = f.layout else { continue }
            let size = f.ciphertextSize
            guard size <= options.fileMax, bytes + size <= options.bytes, !opened.contains(fs.ino(for: e, parentHash: dir)),
                  let key = try? fs.reader.layout.storeKey(f.objectKey) else { continue }
            out.append((key, size))
            bytes += size
        }
        return out
    }

    /// Whether reads are allowed now (no lease: always).
    static func leaseHolds(_ fs: DatasetFS) -> Bool {
        guard let gate = fs.gate else { return true }
        do { try gate.check(); return true } catch { return false }
    }

    /// Hands one directory's objects to the store in batches, `lanes` at a time, while the
    /// lease holds.
    private func run(_ job: Job, fs: DatasetFS) {
        guard Self.leaseHolds(fs) else { return }
        let t0 = DispatchTime.now().uptimeNanoseconds
        let objects = objects(of: job.dir, skipping: job.opened, fs: fs)
        guard !objects.isEmpty else { return }
        let size = max(1, options.batch)
        let batches = stride(from: 0, to: objects.count, by: size).map { Array(objects[$0..<min(objects.count, $0 + size)]) }
        let started = Atomic<Int>(0), bytes = Atomic<Int64>(0)
        runOnLanes(batches.count, lanes: options.lanes) { [self] i in
            guard !stopped, Self.leaseHolds(fs) else { return false }
            started.add(fs.reader.store.warm(batches[i]), ordering: .relaxed)
            bytes.add(batches[i].reduce(0) { $0 + $1.size }, ordering: .relaxed)
            return true
        }
        let n = started.load(ordering: .relaxed), b = bytes.load(ordering: .relaxed)
        totals.withLock { $0.scans += 1; $0.objects += n; $0.bytes += b }
        logger.debug("directory prefetch", metadata: ["directory": "\(fs.reader.objectKey(ofDirectory: job.dir))", "objects": "\(n)",
                                                      "bytes": "\(b)", "ms": "\((DispatchTime.now().uptimeNanoseconds - t0) / 1_000_000)"])
    }
}
