// The s3:// chunk layer: the readahead state machine (no I/O), and the memory and disk block
// caches against the moto test server.
import Foundation
@testable import ObjectStore
import TestSupport
import Testing

@Suite("readahead window (state machine, no I/O)")
struct ReadaheadTests {
    @Test("sequential reads grow the window from one block, doubling to the maximum; a jump resets it")
    func growth() {
        var ra = Readahead(initial: 1 << 20, maximum: 8 << 20)
        let k = Int64(1 << 17)
        #expect(ra.read(at: 0, count: 1 << 17) == k..<(k + (1 << 20)))
        #expect(ra.read(at: k, count: 1 << 17).count == 2 << 20)
        #expect(ra.read(at: 2 * k, count: 1 << 17).count == 4 << 20)
        #expect(ra.read(at: 3 * k, count: 1 << 17).count == 8 << 20)
        #expect(ra.read(at: 4 * k, count: 1 << 17).count == 8 << 20, "capped")
        // Slightly out of order (concurrent FUSE workers) is still sequential.
        #expect(ra.read(at: 4 * k, count: 1 << 17).count == 8 << 20)
        // A jump far away: no readahead, then growth again from one block.
        #expect(ra.read(at: 900 << 20, count: 4096).isEmpty)
        #expect(ra.read(at: (900 << 20) + 4096, count: 4096).count == 1 << 20)
    }

    @Test("random reads never prefetch")
    func random() {
        var ra = Readahead(initial: 1 << 20, maximum: 16 << 20)
        _ = ra.read(at: 500 << 20, count: 10)
        var rng = SeededGenerator(seed: 4)
        var prefetched = 0
        for _ in 0..<1000 {
            let off = Int64.random(in: 0...(1 << 34), using: &rng)
            prefetched += ra.read(at: off, count: 4096).count
        }
        #expect(prefetched == 0)
    }
}

@Suite("s3:// block cache, readahead and disk cache (moto)")
struct BlockCacheStoreTests {
    func k(_ s: String) throws(ObjectStoreError) -> ObjectKey { try ObjectKey(s) }

    func store(_ url: String, _ configure: (inout S3Options) -> Void = { _ in }) throws -> S3ObjectStore {
        var o = S3Options()
        configure(&o)
        return try ObjectStores.open(url: url, s3: o, environment: S3TestServer.shared.environment()) as! S3ObjectStore
    }

    func readAll(_ r: any ObjectReader, chunk: Int) throws -> [UInt8] {
        var out = [UInt8](repeating: 0, count: Int(r.size))
        var off = 0
        while off < out.count {
            let n = min(chunk, out.count - off)
            _ = try out.withUnsafeMutableBytes { try r.read(at: Int64(off), into: UnsafeMutableRawBufferPointer(rebasing: $0[off..<off + n])) }
            off += n
        }
        return out
    }

    @Test("a sequential read in 128 KiB pieces costs about one GET per block, prefetched; a second read costs none")
    func sequential() throws {
        let url = S3TestServer.shared.freshURL("seq")
        let s = try store(url)
        var rng = SeededGenerator(seed: 8)
        let data = rng.bytes(8 << 20 + 100)
        try s.put(k("o"), data)
        let before = s.requestCounts.requests
        let r = try s.openReader(k("o"))
        #expect(bytesEqual(try readAll(r, chunk: 128 << 10), data))
        let used = s.requestCounts.requests - before
        #expect(used <= 1 + 9 + 2, "\(used) requests for 9 blocks")
        let st = s.cacheStatistics!
        #expect(st.prefetches >= 5 && st.misses <= 3, "\(st)")
        let again = s.requestCounts.requests
        #expect(bytesEqual(try readAll(r, chunk: 4096 * 3 + 1), data))
        #expect(s.requestCounts.requests == again, "served from memory")
    }

    @Test("the memory budget bounds cached and in-flight blocks")
    func budget() throws {
        let s = try store(S3TestServer.shared.freshURL("budget")) { $0.cacheMemory = 4 << 20; $0.blockSize = 512 << 10 }
        var rng = SeededGenerator(seed: 9)
        let data = rng.bytes(16 << 20)
        try s.put(k("o"), data)
        let r = try s.openReader(k("o"))
        var peak = 0
        var out = [UInt8](repeating: 0, count: data.count)
        var off = 0
        while off < data.count {
            let n = min(300_000, data.count - off)
            _ = try out.withUnsafeMutableBytes { try r.read(at: Int64(off), into: UnsafeMutableRawBufferPointer(rebasing: $0[off..<off + n])) }
            let st = s.cacheStatistics!
            peak = max(peak, st.cachedBytes + st.pendingBytes)
            off += n
        }
        #expect(bytesEqual(out, data))
        #expect(peak <= 4 << 20 + 512 << 10, "peak \(peak)")
    }

    @Test("disk cache: blocks survive the store, are checked against the ETag, and stay under the limit")
    func disk() throws {
        let dir = TempDir("cce4-diskcache")
        let url = S3TestServer.shared.freshURL("disk")
        var rng = SeededGenerator(seed: 10)
        let data = rng.bytes(3 << 20 + 5)
        let limit: Int64 = 2 << 20 + 4096
        do {
            let s = try store(url) { $0.diskCacheDirectory = dir.sub("c"); $0.diskCacheLimit = limit }
            try s.put(k("o"), data)
            #expect(bytesEqual(try readAll(try s.openReader(k("o")), chunk: 1 << 20), data))
        }
        let files = try FileManager.default.contentsOfDirectory(atPath: dir.sub("c")).filter { $0.hasSuffix(".blk") }
        let total = try files.reduce(0) { $0 + ((try FileManager.default.attributesOfItem(atPath: dir.sub("c/" + $1))[.size] as! NSNumber).intValue) }
        #expect(!files.isEmpty && Int64(total) <= limit, "\(files.count) files, \(total) bytes")
        let mode = (try FileManager.default.attributesOfItem(atPath: dir.sub("c"))[.posixPermissions] as! NSNumber).intValue
        #expect(mode == 0o700)
        // With room for every block, a new store (a new mount) reads them all from disk: only
        // the HEAD goes to the server.
        let big: Int64 = 64 << 20
        let s1b = try store(url) { $0.diskCacheDirectory = dir.sub("c"); $0.diskCacheLimit = big }
        #expect(bytesEqual(try readAll(try s1b.openReader(k("o")), chunk: 1 << 20), data))
        let s2 = try store(url) { $0.diskCacheDirectory = dir.sub("c"); $0.diskCacheLimit = big }
        #expect(bytesEqual(try readAll(try s2.openReader(k("o")), chunk: 1 << 20), data))
        #expect(s2.requestCounts.requests == 1, "\(s2.requestCounts.requests) requests")
        // Replaced in the store: the new ETag never matches the old blocks.
        let data2 = rng.bytes(data.count)
        try s2.put(k("o"), data2)
        let s3 = try store(url) { $0.diskCacheDirectory = dir.sub("c"); $0.diskCacheLimit = big }
        #expect(bytesEqual(try readAll(try s3.openReader(k("o")), chunk: 1 << 20), data2))
    }

    @Test("an object replaced while open gives preconditionFailed through the cache, never the new bytes")
    func staleThroughCache() throws {
        let s = try store(S3TestServer.shared.freshURL("stale")) { $0.readaheadMax = 1 << 20 }
        var rng = SeededGenerator(seed: 11)
        let data = rng.bytes(6 << 20)
        try s.put(k("o"), data)
        let r = try s.openReader(k("o"))
        var buf = [UInt8](repeating: 0, count: 100)
        _ = try buf.withUnsafeMutableBytes { try r.read(at: 0, into: $0) }
        try s.put(k("o"), rng.bytes(6 << 20))
        do {
            _ = try buf.withUnsafeMutableBytes { try r.read(at: 5 << 20, into: $0) }
            Issue.record("read a replaced object")
        } catch {
            #expect((error as? ObjectStoreError)?.code == .preconditionFailed, "\(error)")
        }
    }
}
