// The lease gate, the renewal state machine and the access log, driven without FUSE.
import Dataset
import Envelope
import Filesystem
import Foundation
import ObjectStore
import Synchronization
import TestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

final class TestClock: Sendable {
    private let ms = Atomic<Int64>(1_000_000)
    func store(_ v: Int64, ordering: AtomicStoreOrdering) { ms.store(v, ordering: .sequentiallyConsistent) }
    func load(ordering: AtomicLoadOrdering) -> Int64 { ms.load(ordering: .sequentiallyConsistent) }
}

/// A packed dataset mounted (without FUSE) behind a lease that expires at `expiresAt` on a test clock.
final class LeaseFixture: @unchecked Sendable {
    let dir = TempDir("cce4-lease")
    let fs: DatasetFS
    let key: SecureBytes
    let gate: LeaseGate
    let log = AccessLog(datasetID: "fs")
    let clock = TestClock()
    var nowMs: TestClock { clock }
    let content: [UInt8]

    init(expiresAt: UInt64 = 1_100) throws {
        var rng = SeededGenerator(seed: 5)
        content = rng.bytes(50_000)
        try writeFile(dir.sub("src/a.bin"), content)
        try writeFile(dir.sub("src/b.txt"), Array("bee".utf8))
        let store = try FileObjectStore(root: dir.sub("store"), create: true)
        key = try SecureBytes.random(count: 32)
        let root = try Packer(store: store, datasetID: "fs", key: key).pack(source: dir.sub("src")).root
        let clock = self.clock
        gate = LeaseGate(expiresAt: expiresAt, keys: [key], clock: { clock.load(ordering: .relaxed) })
        fs = try DatasetFS(reader: DatasetReader(store: store, datasetID: "fs", root: root, key: key), gate: gate, accessLog: log)
    }

    func ino(_ name: String) throws -> UInt64 { try fs.lookup(parent: DatasetFS.rootIno, name: Array(name.utf8)).ino }
    func read(_ f: DatasetFile, _ count: Int = 100_000) throws -> [UInt8] {
        var buf = [UInt8](repeating: 0, count: count)
        let n = try buf.withUnsafeMutableBytes { try fs.read(f, offset: 0, into: $0) }
        return Array(buf[0..<n])
    }
    func errno(_ body: () throws -> Void) -> Int32? {
        do { try body(); return nil } catch let e as FSError { return e.errno } catch { return -1 }
    }
}

@Suite("Lease gate, renewal and access log (no FUSE)")
struct LeaseTests {
    @Test("a current lease serves; at expiry every open and read (even on open handles) fails with EACCES and the key is wiped")
    func lapseAtExpiry() throws {
        let fx = try LeaseFixture(expiresAt: 1_100)  // the clock starts at 1000 s
        let a = try fx.ino("a.bin")
        let h = try fx.fs.open(a, flags: O_RDONLY)
        #expect(try fx.read(h) == fx.content)
        fx.nowMs.store(1_099_999, ordering: .relaxed)
        #expect(try fx.read(h).count == fx.content.count)
        fx.nowMs.store(1_100_000, ordering: .relaxed)
        #expect(fx.errno { _ = try fx.read(h) } == EACCES)
        #expect(fx.errno { _ = try fx.fs.open(a, flags: O_RDONLY) } == EACCES)
        #expect(fx.errno { try fx.fs.opendir(DatasetFS.rootIno, flags: O_RDONLY) } == EACCES)
        #expect(fx.errno { _ = try fx.fs.lookup(parent: DatasetFS.rootIno, name: Array("b.txt".utf8)) } == EACCES)
        #expect(fx.gate.isLapsed)
        #expect(fx.key.isZero)
        // A renewal that arrives late does not reopen the gate.
        fx.gate.renewed(expiresAt: 5_000)
        fx.nowMs.store(1_000_000, ordering: .relaxed)
        #expect(fx.errno { _ = try fx.read(h) } == EACCES)
    }

    @Test("a refused renewal lapses the gate at once; renewals move the expiry")
    func refusedAndRenewed() throws {
        let fx = try LeaseFixture(expiresAt: 1_010)
        fx.gate.renewed(expiresAt: 2_000)
        fx.nowMs.store(1_500_000, ordering: .relaxed)
        let h = try fx.fs.open(try fx.ino("b.txt"), flags: O_RDONLY)
        #expect(try fx.read(h) == Array("bee".utf8))
        fx.gate.lapse("the plane refused to renew the lease: no active rental")
        #expect(fx.errno { _ = try fx.read(h) } == EACCES)
        #expect(fx.key.isZero)
        #expect(fx.gate.reason?.contains("no active rental") == true)
    }

    @Test("the check costs microseconds at most: median and p99 of 100,000 checks")
    func checkCost() throws {
        let gate = LeaseGate(expiresAt: UInt64.max / 2000, keys: [])
        var samples: [UInt64] = []
        samples.reserveCapacity(1000)
        for _ in 0..<1000 {
            let t0 = DispatchTime.now().uptimeNanoseconds
            for _ in 0..<100 { try gate.check() }
            samples.append((DispatchTime.now().uptimeNanoseconds - t0) / 100)
        }
        samples.sort()
        let median = samples[500], p99 = samples[990]
        print("lease check: median \(median) ns, p99 \(p99) ns per check")
        #expect(median < 2_000)
    }

    @Test("open+release of a cached file with and without the gate (printed: the issue's per-open figure, without FUSE)")
    func openCost() throws {
        let fx = try LeaseFixture(expiresAt: UInt64.max / 2000)
        let plain = try DatasetFS(reader: fx.fs.reader)
        let ino = try fx.ino("b.txt")
        _ = try plain.lookup(parent: DatasetFS.rootIno, name: Array("b.txt".utf8))
        func measure(_ fs: DatasetFS) throws -> (UInt64, UInt64) {
            var t: [UInt64] = []
            for _ in 0..<2000 {
                let t0 = DispatchTime.now().uptimeNanoseconds
                let h = try fs.open(ino, flags: O_RDONLY)
                fs.release(h)
                t.append(DispatchTime.now().uptimeNanoseconds - t0)
            }
            t.sort()
            return (t[1000], t[1980])
        }
        _ = try measure(plain); _ = try measure(fx.fs)  // warm
        let without = try measure(plain), with = try measure(fx.fs)
        print("open+release without the lease gate: median \(without.0) ns, p99 \(without.1) ns; with the gate and the access log: median \(with.0) ns, p99 \(with.1) ns")
        #expect(fx.log.count >= 4000)
    }

    @Test("the access log has one entry per open with the bytes read through it, in open order")
    func accessLog() throws {
        let fx = try LeaseFixture(expiresAt: 9_999)
        let a = try fx.fs.open(try fx.ino("a.bin"), flags: O_RDONLY)
        let b = try fx.fs.open(try fx.ino("b.txt"), flags: O_RDONLY)
        _ = try fx.read(a, 1000)
        _ = try fx.read(b)
        _ = try fx.read(a, 1000)
        fx.fs.release(a); fx.fs.release(b)
        let a2 = try fx.fs.open(try fx.ino("a.bin"), flags: O_RDONLY)
        _ = a2
        let leaves = fx.log.leaves()
        #expect(leaves.count == 3)
        func bytesRead(_ l: [UInt8]) -> UInt64 { l[40..<48].reduce(0) { $0 << 8 | UInt64($1) } }
        #expect(leaves.map(bytesRead) == [2000, 3, 0])
        #expect(leaves[0][8..<40] == leaves[2][8..<40])  // the same file: the same hash
        #expect(leaves[0][8..<40] != leaves[1][8..<40])
        #expect(leaves.enumerated().allSatisfy { i, l in l[0..<8].reduce(0) { $0 << 8 | UInt64($1) } == UInt64(i) })
    }
}

@Suite("Lease renewal state machine")
struct LeaseRenewalTests {
    @Test("renews at 2/3 of the lease, then waits for the next one")
    func schedule() {
        var m = LeaseRenewal(issuedAt: 1000, expiresAt: 1300)
        #expect(m.handle(.tick(now: 1000)) == .wait(until: 1200))
        #expect(m.handle(.tick(now: 1199)) == .wait(until: 1200))
        #expect(m.handle(.tick(now: 1200)) == .renew)
        #expect(m.handle(.renewed(issuedAt: 1200, expiresAt: 1500, now: 1201)) == .wait(until: 1400))
    }

    @Test("a very short lease is renewed at most once a second")
    func shortLease() {
        var m = LeaseRenewal(issuedAt: 100, expiresAt: 101)
        #expect(m.handle(.tick(now: 100)) == .renew)
        #expect(m.handle(.renewed(issuedAt: 100, expiresAt: 102, now: 100)) == .wait(until: 101))
        #expect(m.handle(.tick(now: 100)) == .wait(until: 101))
        #expect(m.handle(.tick(now: 101)) == .renew)
    }

    @Test("transient failures back off exponentially, capped, and never past the expiry; then lapse")
    func backoff() {
        var m = LeaseRenewal(issuedAt: 0, expiresAt: 90)
        m.maximumBackoff = 8
        #expect(m.handle(.tick(now: 60)) == .renew)
        var waits: [UInt64] = []
        var now: UInt64 = 60
        while true {
            guard case .wait(let until) = m.handle(.failed(now: now, refused: false, reason: "HTTP 503")) else { break }
            waits.append(until - now)
            now = until
            let a = m.handle(.tick(now: now))
            if case .lapse = a { break }
            #expect(a == .renew)
        }
        #expect(waits.prefix(5) == [1, 2, 4, 8, 8])
        #expect(m.lapsed)
        #expect(m.handle(.tick(now: 1000)) == .stop)
    }

    @Test("a success resets the backoff")
    func reset() {
        var m = LeaseRenewal(issuedAt: 0, expiresAt: 300)
        _ = m.handle(.tick(now: 200))
        _ = m.handle(.failed(now: 200, refused: false, reason: "timeout"))
        _ = m.handle(.failed(now: 201, refused: false, reason: "timeout"))
        #expect(m.failures == 2)
        #expect(m.handle(.renewed(issuedAt: 203, expiresAt: 503, now: 203)) == .wait(until: 403))
        #expect(m.failures == 0)
    }

    @Test("a refusal lapses at once; an already-expired renewal lapses")
    func refusal() {
        var m = LeaseRenewal(issuedAt: 0, expiresAt: 300)
        _ = m.handle(.tick(now: 200))
        guard case .lapse(let why) = m.handle(.failed(now: 200, refused: true, reason: "no active rental")) else { Issue.record("no lapse"); return }
        #expect(why.contains("no active rental"))
        var n = LeaseRenewal(issuedAt: 0, expiresAt: 300)
        guard case .lapse = n.handle(.renewed(issuedAt: 0, expiresAt: 250, now: 260)) else { Issue.record("no lapse"); return }
    }
}
