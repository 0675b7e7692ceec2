// cce4fs mounting through a plane for real: the cce4fs binary, a FUSE mount, the key released
// by the KeyReleaseAuthority behind a loopback HTTP server, an embedded ledger. (The Privacy
// Plane's own server maps the same four routes onto `handle(path:body:)`.)
import Attestation
import Envelope
import Foundation
import KeyRelease
import Ledger
import Testing
import TestSupport
import Wallet
#if canImport(Glibc)
import Glibc
#endif

/// A minimal HTTP/1.1 server on 127.0.0.1:0 (keep-alive, Content-Length bodies, Expect:
/// 100-continue), one thread per connection: just enough for libcurl to talk to `handler`.
final class LoopbackHTTP: @unchecked Sendable {
    let fd: Int32
    let port: UInt16
    let handler: @Sendable (String, [UInt8]) -> (status: Int, body: [UInt8])

    init(handler: @escaping @Sendable (String, [UInt8]) -> (status: Int, body: [UInt8])) throws {
        self.handler = handler
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = 0
        let bound = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard bound == 0, listen(fd, 16) == 0 else { throw TestFailure("cannot listen on 127.0.0.1") }
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        port = UInt16(bigEndian: addr.sin_port)
        self.fd = fd
        let listener = fd
        Thread.detachNewThread { [self] in
            while true {
                let c = accept(listener, nil, nil)
                if c < 0 { return }
                Thread.detachNewThread { self.serve(c) }
            }
        }
    }

    var url: String { "http://127.0.0.1:\(port)" }

    func close() { shutdown(fd, Int32(SHUT_RDWR)); Glibc.close(fd) }

    private func serve(_ c: Int32) {
        defer { Glibc.close(c) }
        var buf: [UInt8] = []
        func fill() -> Bool {
            var chunk = [UInt8](repeating: 0, count: 65536)
            let n = read(c, &chunk, chunk.count)
            guard n > 0 else { return false }
            buf += chunk[0..<n]
            return true
        }
        func send(_ b: [UInt8]) { var off = 0; while off < b.count { let n = b[off...].withUnsafeBytes { write(c, $0.baseAddress!, $0.count) }; if n <= 0 { return }; off += n } }
        while true {
            var end: Int?
            while end == nil {
                if let r = buf.indices.dropLast(3).first(where: { buf[$0] == 13 && buf[$0 + 1] == 10 && buf[$0 + 2] == 13 && buf[$0 + 3] == 10 }) { end = r; break }
                guard fill() else { return }
            }
            let head = String(decoding: buf[0..<end!], as: UTF8.self).components(separatedBy: "\r\n")
            buf.removeFirst(end! + 4)
            let path = head[0].split(separator: " ").dropFirst().first.map(String.init) ?? "/"
            var length = 0, expect = false
            for h in head.dropFirst() {
                let kv = h.split(separator: ":", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces).lowercased() }
                if kv.count == 2, kv[0] == "content-length" { length = Int(kv[1]) ?? 0 }
                if kv.count == 2, kv[0] == "expect", kv[1] == "100-continue" { expect = true }
            }
            if expect { send(Array("HTTP/1.1 100 Continue\r\n\r\n".utf8)) }
            while buf.count < length { guard fill() else { return } }
            let body = Array(buf[0..<length])
            buf.removeFirst(length)
            let (status, answer) = handler(path, body)
            let type = (200..<300).contains(status) ? "application/json" : "application/problem+json"
            send(Array("HTTP/1.1 \(status) X\r\nContent-Type: \(type)\r\nContent-Length: \(answer.count)\r\n\r\n".utf8) + answer)
        }
    }
}

/// A packed dataset, a ledger with its version, a plane authority behind loopback HTTP.
final class PlaneFixture: @unchecked Sendable {
    let dir = TempDir("cce4-plane-mount")
    let owner = try! PrivateKey.generate(), consumer = try! PrivateKey.generate(), plane = try! PrivateKey.generate()
    let key = try! SecureBytes.random(count: 32)
    let root: String
    let files: [String: [UInt8]]
    let ownerLedger: EmbeddedLedger
    let authority: KeyReleaseAuthority
    let server: LoopbackHTTP
    var rentalID: UInt64 = 0
    var store: String { "file://" + dir.sub("store") }

    init(rent: Bool = true, leaseTTL: UInt64 = 3) throws {
        var rng = SeededGenerator(seed: 99)
        var files: [String: [UInt8]] = [:]
        for i in 0..<6 { files["data/part\(i).bin"] = rng.bytes(20_000 + i * 7000) }
        files["README.txt"] = Array("trial data\n".utf8)
        for (p, b) in files { try writeFile(dir.sub("src/" + p), b) }
        self.files = files
        try writeFile(dir.sub("key"), InsecureKeyFile.encode(key))
        chmod(dir.sub("key"), 0o600)
        root = try packWithCLI(source: dir.sub("src"), store: "file://" + dir.sub("store"), dataset: "trial", keyFile: dir.sub("key"))
        ownerLedger = try EmbeddedLedger.create(path: dir.sub("ledger"))
        try ownerLedger.submit(.registerDataset(dataset: "trial", policyHash: [UInt8](repeating: 2, count: 32), owner: owner.address), signer: owner)
        try ownerLedger.submit(.registerVersion(dataset: "trial", root: Hex.decode(root)!), signer: owner)
        if rent {
            let e = try ownerLedger.submit(.setRental(dataset: "trial", rentalID: 0, user: consumer.address, expires: UInt64(Date().timeIntervalSince1970) + 3600), signer: owner)
            if case .setRental(_, let id, _, _) = e.operation { rentalID = id }
        }
        var policy = Policy()
        policy.allowedMeasurements = [measurement]
        let planeLedger = try EmbeddedLedger(path: dir.sub("ledger"), writable: true)
        authority = KeyReleaseAuthority(ledger: planeLedger, policy: policy, allowSimulated: true, identity: plane,
                                        macKey: try SecureBytes.random(count: 32), keys: Keys(keys: ["trial": key]), leaseTTL: leaseTTL)
        let a = authority
        server = try LoopbackHTTP { path, body in a.handle(path: path, body: body) }
        let credential = try JobCredential.make(job: "mount-job", datasets: [try DatasetVersion(id: "trial", root: try SHA256Digest(hex: root))],
                                                measurement: measurement, image: "sha256:test", expires: UInt64(Date().timeIntervalSince1970) + 3600, key: consumer)
        try writeFile(dir.sub("credential.json"), Array(try JSONEncoder().encode(credential)))
    }

    var options: [String] {
        ["dataset=trial", "root=\(root)", "plane=\(server.url)", "credential=\(dir.sub("credential.json"))", "attest=simulated",
         "plane_identity=\(plane.address.checksummed)"]
    }

    func mount(_ extra: [String] = []) throws -> (ProcessResult, String) {
        let mp = dir.sub("mnt")
        try FileManager.default.createDirectory(atPath: mp, withIntermediateDirectories: true)
        return (try run(Repo.binary("cce4fs"), [store, mp, "-o", (options + extra).joined(separator: ",")]), mp)
    }

    func events(_ kind: String) throws -> [Event] {
        try ownerLedger.refresh()
        return ownerLedger.events(matching: EventFilter(kind: kind))
    }

    deinit { server.close() }
}

/// Unmounts on scope exit, even when a test fails.
final class Unmounter { let path: String; var done = false; init(_ p: String) { path = p }
    func unmount() { guard !done else { return }; done = true; if (try? run("/bin/umount", [path]))?.status != 0 { _ = try? run("/bin/umount", ["-l", path]) } }
    deinit { unmount() } }

@Suite("cce4fs through the plane (real FUSE mounts)", .serialized)
struct PlaneMountTests {
    @Test("mount through the plane, read every file, end the rental: EACCES within the lease, access log recorded at unmount")
    func endToEnd() throws {
        let fx = try PlaneFixture(leaseTTL: 3)
        let (r, mp) = try fx.mount()
        #expect(r.status == 0, "\(r.stderr)")
        guard r.status == 0 else { return }
        let m = Unmounter(mp)
        defer { m.unmount() }
        #expect(try fx.events("key.release.simulated").count == 1)
        for (p, b) in fx.files.sorted(by: { $0.key < $1.key }) where p != "data/part5.bin" {
            #expect(try readFile(mp + "/" + p) == b, "\(p)")
        }
        // Renewals keep the mount alive past the first lease.
        Thread.sleep(forTimeInterval: 4)
        #expect(try readFile(mp + "/README.txt") == fx.files["README.txt"])
        // A descriptor opened (and its pages cached) before the lapse.
        let early = open(mp + "/data/part0.bin", O_RDONLY)
        #expect(early >= 0)
        var page = [UInt8](repeating: 0, count: 4096)
        #expect(pread(early, &page, 4096, 0) == 4096)
        // The owner ends the rental: the next renewal is refused, the lease lapses.
        try fx.ownerLedger.submit(.endRental(dataset: "trial", rentalID: fx.rentalID), signer: fx.owner)
        let start = Date()
        var errnoSeen: Int32 = 0
        while Date().timeIntervalSince(start) < 10 {
            let fd = open(mp + "/data/part5.bin", O_RDONLY)
            if fd < 0 { errnoSeen = errno; break }
            close(fd)
            Thread.sleep(forTimeInterval: 0.2)
        }
        #expect(errnoSeen == EACCES)
        #expect(Date().timeIntervalSince(start) < 3 + 2)
        #expect(open(mp + "/README.txt", O_RDONLY) < 0 && errno == EACCES)
        // The kernel's cached pages were dropped: the early descriptor reads through the gate too.
        var earlyRead = 0
        for _ in 0..<20 { earlyRead = pread(early, &page, 4096, 0); if earlyRead < 0 { break }; Thread.sleep(forTimeInterval: 0.1) }
        #expect(earlyRead < 0 && errno == EACCES)
        close(early)  // an open descriptor would make umount fail with EBUSY
        #expect(try fx.events("key.refused").count == 1)
        m.unmount()
        var logged: [Event] = []
        for _ in 0..<50 where logged.isEmpty { logged = try fx.events("access.log"); Thread.sleep(forTimeInterval: 0.1) }
        #expect(logged.count == 1)
    }

    @Test("no rental: the mount fails with the plane's reason, exit 77, and the ledger records the refusal")
    func refusedMount() throws {
        let fx = try PlaneFixture(rent: false)
        let (r, mp) = try fx.mount()
        if r.status == 0 { Unmounter(mp).unmount() }
        #expect(r.status == 77)
        #expect(r.stderr.contains("no active rental of 'trial'"), "\(r.stderr)")
        #expect(try fx.events("key.refused").count == 1)
    }

    @Test("insecure_key_file= still mounts, with a warning once the mount is live")
    func insecureKeyFileWarns() throws {
        let fx = try PlaneFixture()
        let mp = fx.dir.sub("mnt-insecure")
        try FileManager.default.createDirectory(atPath: mp, withIntermediateDirectories: true)
        let r = try run(Repo.binary("cce4fs"), [fx.store, mp, "-o", "dataset=trial,root=\(fx.root),insecure_key_file=\(fx.dir.sub("key"))"])
        #expect(r.status == 0, "\(r.stderr)")
        guard r.status == 0 else { return }
        let m = Unmounter(mp)
        defer { m.unmount() }
        #expect(r.stderr.contains("WARNING: insecure_key_file="))
        #expect(try readFile(mp + "/README.txt") == fx.files["README.txt"])
    }

    @Test("a lease signed by another identity than plane_identity: the mount fails, exit 65")
    func wrongIdentity() throws {
        let fx = try PlaneFixture()
        let other = try PrivateKey.generate()
        let (r, mp) = try fx.mount(["plane_identity=\(other.address.checksummed)"])
        if r.status == 0 { Unmounter(mp).unmount() }
        #expect(r.status == 65, "\(r.stderr)")
        #expect(r.stderr.contains("not signed by the pinned identity"))
    }
}
