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

    let options: PrefetchOptions
    private let state = Mutex<(scans: [SHA256Digest: Scan], stopped: Bool)>(([:], false))
    /// Scans started and objects and bytes handed to the store (tests, logs).
    private let totals = Mutex<(scans: Int, objects: Int, bytes: Int64)>((0, 0, 0))
    private let logger = Logger(label: "cce4fs.prefetch")
    /// Directories tracked at most; past it the table starts over (a directory may then be
    /// warmed twice, which costs a second pass of hints, nothing more).
    static let trackedLimit = 4096

    init(options: PrefetchOptions) { self.options = options }

    var statistics: (scans: Int, objects: Int, bytes: Int64) { totals.withLock { $0 } }

    func stop() { state.withLock { $0.stopped = true } }

    private var stopped: Bool { state.withLock { $0.stopped } }

    /// `ino`, a file of directory `dir`, was opened; returns whether this open started the
    /// directory's prefetch.
    @discardableResult
    func opened(_ ino: UInt64, in dir: SHA256Digest, fs: DatasetFS) -> Bool {
        let after = options.after
        let start: Bool = state.withLock { s in
            guard !s.stopped else { return false }
            switch s.scans[dir] {
            case .started?: return false
            case .counting(var seen)?:
                seen.insert(ino)
                if seen.count >= after { s.scans[dir] = .started; return true }
                s.scans[dir] = .counting(seen)
                return false
            case nil:
                if s.scans.count >= Self.trackedLimit { s.scans.removeAll() }
                if after <= 1 { s.scans[dir] = .started; return true }
                s.scans[dir] = .counting([ino])
                return false
            }
        }
        guard start else { return false }
        // A thread of its own (it blocks on the store, and waits for its lanes below).
        Thread.detachNewThread { [self] in run(dir, fs: fs) }
        return true
    }

    /// The small files' objects of `dir`, in directory order, within the byte budget.
    func objects(of dir: SHA256Digest, reader: DatasetReader) -> [(key: ObjectKey, size: Int64)] {
        guard let listing = try? reader.directory(dir) else { return [] }
        var out = [(key: ObjectKey, size: Int64)]()
        var bytes: Int64 = 0
        for i in 0..<listing.count {
            guard case .file(let f)? = try? listing.entry(at: i).target else { continue }
            let parts = f.parts
            guard parts.count == 1, let part = parts.first, part.size <= options.fileMax,
                  bytes + part.size <= options.bytes, let key = try? reader.layout.storeKey(part.key) else { continue }
            out.append((key, part.size))
            bytes += part.size
        }
        return out
    }

    /// Whether reads are allowed now (no lease: always).
    static func leaseHolds(_ fs: DatasetFS) -> Bool {
        guard let gate = fs.gate else { return true }
        do { try gate.check(); return true } catch { return false }
    }

    /// Hands the objects to the store in batches, `lanes` at a time, while the lease holds.
    private func run(_ dir: SHA256Digest, fs: DatasetFS) {
        let t0 = DispatchTime.now().uptimeNanoseconds
        let objects = objects(of: dir, reader: fs.reader)
        guard !objects.isEmpty else { return }
        let batches = stride(from: 0, to: objects.count, by: max(1, options.batch)).map { Array(objects[$0..<min(objects.count, $0 + max(1, options.batch))]) }
        let next = Atomic<Int>(0), started = Atomic<Int>(0), bytes = Atomic<Int64>(0)
        let group = DispatchGroup()
        for _ in 0..<min(max(1, options.lanes), batches.count) {
            group.enter()
            Thread.detachNewThread { [self] in
                defer { group.leave() }
                while true {
                    let i = next.add(1, ordering: .relaxed).oldValue
                    guard i < batches.count, !stopped, Self.leaseHolds(fs) else { return }
                    started.add(fs.reader.store.warm(batches[i]), ordering: .relaxed)
                    bytes.add(batches[i].reduce(0) { $0 + $1.size }, ordering: .relaxed)
                }
            }
        }
        group.wait()
        let n = started.load(ordering: .relaxed), b = bytes.load(ordering: .relaxed)
        totals.withLock { $0.scans += 1; $0.objects += n; $0.bytes += b }
        logger.debug("directory prefetch", metadata: ["directory": "\(fs.reader.objectKey(ofDirectory: dir))", "objects": "\(n)",
                                                      "bytes": "\(b)", "ms": "\((DispatchTime.now().uptimeNanoseconds - t0) / 1_000_000)"])
    }
}
