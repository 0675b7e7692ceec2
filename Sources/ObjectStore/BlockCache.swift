// The chunk layer's caches for s3:// stores: fixed-size blocks of ciphertext in memory
// (LRU, a byte budget shared with in-flight fetches), optionally on disk (LRU, a size limit),
// and a readahead window that grows on sequential access. Blocks are keyed by object key,
// ETag and index: a replaced object never mixes with its old blocks. Only ciphertext ever
// passes through here; plaintext exists only in the FUSE layer's reply buffers.
import Dispatch
import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The readahead window of one reader, as a value-type state machine (no I/O): sequential
/// reads grow the window from `initial`, doubling up to `maximum` (mountpoint-s3's
/// prefetcher starts around 1 MiB and doubles); a jump elsewhere resets it.
struct Readahead: Sendable, Equatable {
    let initial: Int64
    let maximum: Int64
    /// Where the next sequential read would start.
    private(set) var next: Int64 = 0
    private(set) var window: Int64 = 0

    init(initial: Int64, maximum: Int64) { self.initial = initial; self.maximum = max(initial, maximum) }

    /// Continues a sequential stream that arrives here from elsewhere (the previous part of a
    /// file): the next read at `offset` is sequential, with the window at its largest.
    mutating func continueSequential(at offset: Int64) -> Range<Int64> {
        next = offset
        window = maximum
        return offset..<(offset + window)
    }

    /// Records a read; returns the byte range to prefetch after it (empty for none).
    mutating func read(at offset: Int64, count: Int) -> Range<Int64> {
        // Concurrent FUSE workers deliver a sequential stream slightly out of order: a read
        // that starts anywhere from one window behind to one window ahead is sequential.
        let slack = max(window, initial)
        let sequential = offset >= next - slack && offset <= next + slack
        if sequential {
            window = window == 0 ? initial : min(maximum, window * 2)
        } else {
            window = 0
        }
        let end = offset + Int64(count)
        next = max(end, sequential ? next : end)
        return window > 0 ? end..<(end + window) : end..<end
    }
}

/// One cached block's identity.
struct BlockID: Hashable, Sendable {
    let key: String
    let etag: String
    let index: Int64
}

/// Blocks on disk: one file per block, named by a hash of its identity, holding a header
/// with the full identity (checked on every hit, so a hash collision or a stale ETag is a
/// miss) and the ciphertext. LRU eviction keeps the total under `limit`.
final class DiskBlockCache: Sendable {
    let directory: String
    let limit: Int64
    /// File name → (size, last use tick); the total size. Lock order: taken alone.
    private let index = Mutex<(files: [String: (size: Int64, tick: UInt64)], total: Int64, tick: UInt64)>(([:], 0, 0))

    init(directory: String, limit: Int64) throws(ObjectStoreError) {
        self.directory = directory; self.limit = limit
        try FileObjectStore.makeDirectories(directory)
        // Ciphertext only, but still nobody else's business.
        _ = chmod(directory, 0o700)
        // Existing blocks (a previous mount's) are kept, oldest first in LRU order.
        var found = [(String, Int64, Int)]()
        if let dir = opendir(directory) {
            while let ent = readdir(dir) {
                let name = withUnsafeBytes(of: ent.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
                guard name.hasSuffix(".blk") else { continue }
                var st = stat()
                if stat(directory + "/" + name, &st) == 0 { found.append((name, Int64(st.st_size), st.st_mtim.tv_sec)) }
            }
            closedir(dir)
        }
        found.sort { $0.2 < $1.2 }
        index.withLock { s in
            for (n, size, _) in found { s.tick += 1; s.files[n] = (size, s.tick); s.total += size }
        }
        evict()
    }

    static func fileName(_ id: BlockID) -> String {
        // FNV-1a 64 over the identity: a name only; the header inside is what is trusted.
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in id.key.utf8 + [0] + id.etag.utf8 + [0] + String(id.index).utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
        return String(h, radix: 16) + ".blk"
    }

    static func header(_ id: BlockID) -> [UInt8] { Array("cce4-block\n\(id.key)\n\(id.etag)\n\(id.index)\n".utf8) }

    var totalBytes: Int64 { index.withLock { $0.total } }

    func get(_ id: BlockID, expectedCount: Int) -> [UInt8]? {
        let name = Self.fileName(id)
        guard index.withLock({ s -> Bool in
            guard let e = s.files[name] else { return false }
            s.tick += 1; s.files[name] = (e.size, s.tick); return true
        }) else { return nil }
        guard let data = FileManager.default.contents(atPath: directory + "/" + name) else { return nil }
        let h = Self.header(id)
        guard data.count == h.count + expectedCount, data.prefix(h.count).elementsEqual(h) else { return nil }
        return Array(data.dropFirst(h.count))
    }

    func put(_ id: BlockID, _ bytes: [UInt8]) {
        let name = Self.fileName(id)
        let tmp = directory + "/.tmp-" + name + "-" + String(UInt32.random(in: 0...UInt32.max), radix: 16)
        let data = Data(Self.header(id) + bytes)
        guard FileManager.default.createFile(atPath: tmp, contents: data, attributes: [.posixPermissions: 0o600]) else { return }
        guard rename(tmp, directory + "/" + name) == 0 else { unlink(tmp); return }
        index.withLock { s in
            s.tick += 1
            if let old = s.files[name] { s.total -= old.size }
            s.files[name] = (Int64(data.count), s.tick); s.total += Int64(data.count)
        }
        evict()
    }

    /// Removes least recently used blocks until the total fits the limit (unlinks outside the lock).
    func evict() {
        let victims: [String] = index.withLock { s in
            guard s.total > limit else { return [] }
            var out = [String]()
            for (name, e) in s.files.sorted(by: { $0.value.tick < $1.value.tick }) {
                if s.total <= limit { break }
                s.files[name] = nil; s.total -= e.size; out.append(name)
            }
            return out
        }
        for v in victims { unlink(directory + "/" + v) }
    }
}

/// Ciphertext blocks in memory with LRU eviction under a byte budget that also counts
/// in-flight fetches; concurrent readers of one block share one fetch.
final class BlockCache: Sendable {
    let blockSize: Int
    let budget: Int
    let disk: DiskBlockCache?

    final class Pending: @unchecked Sendable {
        let done = DispatchGroup()
        var result: Result<[UInt8], ObjectStoreError>?  // written before done.leave()
        let size: Int
        init(size: Int) { self.size = size; done.enter() }
    }

    struct State {
        var blocks = [BlockID: (bytes: [UInt8], tick: UInt64)]()
        var pending = [BlockID: Pending]()
        var cachedBytes = 0
        var pendingBytes = 0
        var tick: UInt64 = 0
        var hits = 0, misses = 0, prefetches = 0
    }
    /// Lock order: taken alone; never held across I/O, waits or copies of block data.
    private let state = Mutex(State())
    private static let prefetchQueue = DispatchQueue(label: "cce4.s3.prefetch", attributes: .concurrent)

    init(blockSize: Int, budget: Int, disk: DiskBlockCache?) {
        self.blockSize = blockSize; self.budget = max(budget, 2 * blockSize); self.disk = disk
    }

    var statistics: (hits: Int, misses: Int, prefetches: Int, cachedBytes: Int, pendingBytes: Int) {
        state.withLock { ($0.hits, $0.misses, $0.prefetches, $0.cachedBytes, $0.pendingBytes) }
    }

    private enum Claim { case hit([UInt8]), wait(Pending), fetch(Pending) }

    private func claim(_ id: BlockID, size: Int, count: Bool) -> Claim {
        state.withLock { s in
            if let b = s.blocks[id] {
                s.tick += 1; s.blocks[id] = (b.bytes, s.tick)
                if count { s.hits += 1 }
                return .hit(b.bytes)
            }
            if let p = s.pending[id] { if count { s.hits += 1 }; return .wait(p) }
            if count { s.misses += 1 }
            let p = Pending(size: size)
            s.pending[id] = p; s.pendingBytes += size
            Self.evict(&s, budget: budget)
            return .fetch(p)
        }
    }

    private func finish(_ id: BlockID, _ p: Pending, _ result: Result<[UInt8], ObjectStoreError>) {
        p.result = result
        state.withLock { s in
            s.pending[id] = nil; s.pendingBytes -= p.size
            if case .success(let bytes) = result {
                s.tick += 1; s.blocks[id] = (bytes, s.tick); s.cachedBytes += bytes.count
                Self.evict(&s, budget: budget, keep: id)
            }
        }
        p.done.leave()
    }

    /// Drops least recently used blocks until cached + in-flight bytes fit the budget (the
    /// block just stored is kept: its reader is about to copy it).
    private static func evict(_ s: inout State, budget: Int, keep: BlockID? = nil) {
        while s.cachedBytes + s.pendingBytes > budget,
              let victim = s.blocks.filter({ $0.key != keep }).min(by: { $0.value.tick < $1.value.tick }) {
            s.blocks[victim.key] = nil; s.cachedBytes -= victim.value.bytes.count
        }
    }

    private func load(_ id: BlockID, size: Int, fetch: () throws(ObjectStoreError) -> [UInt8]) -> Result<[UInt8], ObjectStoreError> {
        if let d = disk, let b = d.get(id, expectedCount: size) { return .success(b) }
        do throws(ObjectStoreError) {
            let b = try fetch()
            disk?.put(id, b)
            return .success(b)
        } catch { return .failure(error) }
    }

    /// The block, from memory, from a fetch already in flight, from disk, or fetched now.
    func block(_ id: BlockID, size: Int, fetch: () throws(ObjectStoreError) -> [UInt8]) throws(ObjectStoreError) -> [UInt8] {
        switch claim(id, size: size, count: true) {
        case .hit(let b): return b
        case .wait(let p):
            p.done.wait()
            return try p.result!.get()
        case .fetch(let p):
            let r = load(id, size: size, fetch: fetch)
            finish(id, p, r)
            return try r.get()
        }
    }

    /// Stores a block fetched elsewhere (the first block of an object, read when it is opened).
    func insert(_ id: BlockID, _ bytes: [UInt8]) {
        state.withLock { s in
            guard s.blocks[id] == nil, s.pending[id] == nil else { return }
            s.tick += 1; s.blocks[id] = (bytes, s.tick); s.cachedBytes += bytes.count
            Self.evict(&s, budget: budget, keep: id)
        }
        disk?.put(id, bytes)
    }

    /// Starts fetching a run of consecutive blocks in the background with one request
    /// (`fetch` returns their bytes back to back), from the first block that is neither cached
    /// nor in flight, up to the next one that is, or until the budget for fetches is taken.
    /// One GET for several blocks: fewer requests (S3 bills them; moto pays per request).
    func prefetchRun(_ run: [(id: BlockID, size: Int)], fetch: @escaping @Sendable (_ first: Int, _ count: Int) throws(ObjectStoreError) -> [UInt8]) {
        let claimed: (first: Int, pendings: [Pending])? = state.withLock { s in
            guard let start = run.firstIndex(where: { s.blocks[$0.id] == nil && s.pending[$0.id] == nil }) else { return nil }
            var ps = [Pending]()
            for item in run[start...] {
                guard s.blocks[item.id] == nil, s.pending[item.id] == nil, s.pendingBytes + item.size <= budget / 2 else { break }
                let p = Pending(size: item.size)
                s.pending[item.id] = p; s.pendingBytes += item.size; s.prefetches += 1
                ps.append(p)
            }
            Self.evict(&s, budget: budget)
            return ps.isEmpty ? nil : (start, ps)
        }
        guard let (first, pendings) = claimed else { return }
        let items = Array(run[first..<(first + pendings.count)])
        Self.prefetchQueue.async { [self] in
            // Blocks already on disk need no request; the rest go in one GET.
            var result: Result<[UInt8], ObjectStoreError>
            if let d = disk, case let local = items.map({ d.get($0.id, expectedCount: $0.size) }), local.allSatisfy({ $0 != nil }) {
                result = .success(local.flatMap { $0! })
            } else {
                do throws(ObjectStoreError) { result = .success(try fetch(first, pendings.count)) } catch { result = .failure(error) }
            }
            var offset = 0
            for (item, p) in zip(items, pendings) {
                switch result {
                case .success(let all) where all.count >= offset + item.size:
                    let bytes = Array(all[offset..<(offset + item.size)])
                    disk?.put(item.id, bytes)
                    finish(item.id, p, .success(bytes))
                case .success:
                    finish(item.id, p, .failure(ObjectStoreError(.io, key: item.id.key, "prefetch returned too few bytes")))
                case .failure(let e):
                    finish(item.id, p, .failure(e))
                }
                offset += item.size
            }
        }
    }

    /// Starts fetching a block in the background unless it is cached, in flight, or the
    /// budget is taken by other fetches.
    func prefetch(_ id: BlockID, size: Int, fetch: @escaping @Sendable () throws(ObjectStoreError) -> [UInt8]) {
        let go: Pending? = state.withLock { s in
            guard s.blocks[id] == nil, s.pending[id] == nil, s.pendingBytes + size <= budget / 2 else { return nil }
            let p = Pending(size: size)
            s.pending[id] = p; s.pendingBytes += size; s.prefetches += 1
            Self.evict(&s, budget: budget)
            return p
        }
        guard let p = go else { return }
        Self.prefetchQueue.async { [self] in
            let r = load(id, size: size, fetch: fetch)
            finish(id, p, r)
        }
    }
}
