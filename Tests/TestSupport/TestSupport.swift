// Shared helpers for the test targets. Real processes, real files: no fakes.
import Foundation
#if canImport(Glibc)
import Glibc
#endif

public enum Repo {
    /// The package root (found from this file's path, so tests run from any directory).
    public static let root: String = {
        var url = URL(fileURLWithPath: #filePath)
        while url.path != "/" {
            url.deleteLastPathComponent()
            if FileManager.default.fileExists(atPath: url.appendingPathComponent("Package.swift").path) { return url.path }
        }
        fatalError("Package.swift not found above \(#filePath)")
    }()

    /// The workplace's shared/ directory (third-party test data and tools, never copied in):
    /// `CCE4_SHARED` (the Makefile sets it with scripts/shared-dir.sh, which also finds it
    /// beside a clone's origin), else ../shared beside the repo.
    public static let shared: String = ProcessInfo.processInfo.environment["CCE4_SHARED"] ?? root + "/../shared"

    /// The repo venv's Python (made by `make setup`). Tests that need it fail, never skip,
    /// when it is missing: `make test` creates it.
    public static var python: String {
        let p = ProcessInfo.processInfo.environment["CCE4_PYTHON"] ?? root + "/.venv/bin/python"
        precondition(FileManager.default.isExecutableFile(atPath: p), "\(p) missing: run 'make setup' (or 'make test') first")
        return p
    }

    /// A built executable of this package (`swift build` puts it in .build/debug).
    public static func binary(_ name: String) -> String {
        let env = ProcessInfo.processInfo.environment
        if let dir = env["CCE4_BIN_DIR"] { return dir + "/" + name }
        for cfg in ["debug", "release"] {
            let p = root + "/.build/\(cfg)/" + name
            if FileManager.default.isExecutableFile(atPath: p) { return p }
        }
        preconditionFailure("\(name) is not built: run 'swift build' first (make test does)")
    }
}

/// A fresh temporary directory, removed when the value is released.
public final class TempDir: @unchecked Sendable {
    public let path: String
    public init(_ label: String = "cce4-test") {
        var base = NSTemporaryDirectory()
        while base.hasSuffix("/") { base.removeLast() }
        var template = Array((base + "/\(label)-XXXXXX").utf8CString)
        guard mkdtemp(&template) != nil else { fatalError("mkdtemp failed") }
        // Canonical (no "//", no symlinks): mount tables show mount points this way.
        var resolved = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        guard realpath(template, &resolved) != nil else { fatalError("realpath failed") }
        path = String(decoding: resolved.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
    deinit { try? FileManager.default.removeItem(atPath: path) }
    public func sub(_ name: String) -> String { path + "/" + name }
}

/// The result of running a process.
public struct ProcessResult: Sendable {
    public let status: Int32
    public let stdout: Data
    public let stderr: String
    public var stdoutText: String { String(decoding: stdout, as: UTF8.self) }
}

/// Runs a program to completion, capturing both streams (read concurrently, so large
/// outputs cannot deadlock the pipe).
@discardableResult
public func run(_ program: String, _ args: [String], cwd: String? = nil, environment: [String: String]? = nil, input: Data? = nil) throws -> ProcessResult {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: program)
    p.arguments = args
    if let cwd { p.currentDirectoryURL = URL(fileURLWithPath: cwd) }
    if let environment { p.environment = environment }
    let out = Pipe(), err = Pipe()
    // Our ends of the pipes must not leak into a child another test spawns meanwhile (a
    // server that lives on would hold the write end open, and the read to EOF below would
    // wait for it); the child's own copies are dup2'ed to its 1 and 2, which clears the flag.
    for pipe in [out, err] { closeOnExec(pipe) }
    p.standardOutput = out
    p.standardError = err
    // The input comes from an unlinked file, not a pipe: no write end exists that a child of
    // a concurrent test could inherit and keep open, so the program always sees EOF.
    var inFile: FileHandle?
    if let input {
        let path = FileManager.default.temporaryDirectory.path + "/cce4-stdin-" + UUID().uuidString
        guard FileManager.default.createFile(atPath: path, contents: input, attributes: [.posixPermissions: 0o600]),
              let h = FileHandle(forReadingAtPath: path) else { throw TestFailure("cannot write the input of \(program) to \(path)") }
        unlink(path)
        inFile = h
    }
    defer { try? inFile?.close() }
    p.standardInput = inFile ?? FileHandle.nullDevice
    try p.run()
    final class Box: @unchecked Sendable { var data = Data() }
    let errBox = Box()
    let group = DispatchGroup()
    group.enter()
    DispatchQueue.global().async { errBox.data = err.fileHandleForReading.readDataToEndOfFile(); group.leave() }
    let outData = out.fileHandleForReading.readDataToEndOfFile()
    group.wait()
    p.waitUntilExit()
    return ProcessResult(status: p.terminationStatus, stdout: outData, stderr: String(decoding: errBox.data, as: UTF8.self))
}

/// Marks both ends of `pipe` close-on-exec in this process.
public func closeOnExec(_ pipe: Pipe) {
    _ = fcntl(pipe.fileHandleForReading.fileDescriptor, F_SETFD, FD_CLOEXEC)
    _ = fcntl(pipe.fileHandleForWriting.fileDescriptor, F_SETFD, FD_CLOEXEC)
}

/// Deterministic pseudo-random bytes (SplitMix64), for reproducible test data.
public struct SeededGenerator: RandomNumberGenerator, Sendable {
    var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    public mutating func bytes(_ n: Int) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: n)
        out.withUnsafeMutableBytes { b in
            var i = 0
            while i + 8 <= n { b.storeBytes(of: next(), toByteOffset: i, as: UInt64.self); i += 8 }
            while i < n { b[i] = UInt8(truncatingIfNeeded: next()); i += 1 }
        }
        return out
    }
}

public func writeFile(_ path: String, _ bytes: [UInt8]) throws {
    try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
    try Data(bytes).write(to: URL(fileURLWithPath: path))
}

public func readFile(_ path: String) throws -> [UInt8] { Array(try Data(contentsOf: URL(fileURLWithPath: path))) }

/// A differential check of a fast key validator against a plain reference, over `count`
/// seeded random strings of 0...`maxLength` characters of `alphabet`: the first string on
/// which they disagree (nil if none) and how many the validator accepted.
public func differentialKeyCheck(alphabet: String, maxLength: Int, seed: UInt64, count: Int = 200_000,
                                 _ check: (String) -> Bool, reference: (String) -> Bool) -> (mismatch: String?, accepted: Int) {
    let letters = Array(alphabet.utf8)
    var rng = SeededGenerator(seed: seed)
    var accepted = 0
    for _ in 0..<count {
        let n = Int.random(in: 0...maxLength, using: &rng)
        let key = String(decoding: (0..<n).map { _ in letters[Int.random(in: 0..<letters.count, using: &rng)] }, as: UTF8.self)
        let got = check(key)
        if got != reference(key) { return (key, accepted) }
        if got { accepted += 1 }
    }
    return (nil, accepted)
}

/// Equality of byte arrays without a per-element Swift loop (fast in debug builds).
public func bytesEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
    a.count == b.count && a.withUnsafeBytes { x in b.withUnsafeBytes { y in a.isEmpty || memcmp(x.baseAddress!, y.baseAddress!, a.count) == 0 } }
}

public func bytesEqual(_ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer) -> Bool {
    a.count == b.count && (a.isEmpty || memcmp(a.baseAddress!, b.baseAddress!, a.count) == 0)
}

/// A real cce4fs mount in a temp directory, always unmounted: explicitly with `unmount()`,
/// and from `deinit` if a test failed before reaching it (go-fuse's newTestCase).
public final class TestMount: @unchecked Sendable {
    public let path: String
    private var mounted = false

    /// Mounts with the cce4fs binary (background mode: returns once the mount is live).
    public init(store: String, mountpoint: String, dataset: String, root: String, keyFile: String, extra: [String] = []) throws {
        path = mountpoint
        try FileManager.default.createDirectory(atPath: mountpoint, withIntermediateDirectories: true)
        let opts = (["dataset=\(dataset)", "root=\(root)", "insecure_key_file=\(keyFile)"] + extra).joined(separator: ",")
        let r = try run(Repo.binary("cce4fs"), [store, mountpoint, "-o", opts])
        guard r.status == 0 else { throw MountFailure(status: r.status, stderr: r.stderr) }
        mounted = true
    }

    public struct MountFailure: Error, CustomStringConvertible {
        public let status: Int32
        public let stderr: String
        public var description: String { "cce4fs exited \(status): \(stderr)" }
    }

    /// Unmounts; falls back to a lazy unmount so a stuck test never leaves a mount behind.
    public func unmount() {
        guard mounted else { return }
        mounted = false
        if (try? run("/bin/umount", [path]))?.status != 0 { _ = try? run("/bin/umount", ["-l", path]) }
    }

    deinit { unmount() }
}

private let keyFileLock = NSLock()

/// Packs `source` with the cce4 binary into `store` under a new key; returns (key file, root).
public func packWithCLI(source: String, store: String, dataset: String, keyFile: String, extra: [String] = []) throws -> String {
    // Fixtures that share a key file are set up concurrently (file:// and s3:// mounts): make
    // it once, under a lock, or the second `key generate` is refused (it never overwrites).
    try keyFileLock.withLock {
        if !FileManager.default.fileExists(atPath: keyFile) {
            let k = try run(Repo.binary("cce4"), ["key", "generate", "--insecure-key-file", keyFile])
            guard k.status == 0 else { throw TestFailure("key generate: \(k.stderr)") }
        }
    }
    let r = try run(Repo.binary("cce4"), ["dataset", "pack", source, "--store", store, "--dataset", dataset, "--insecure-key-file", keyFile] + extra)
    guard r.status == 0 else { throw TestMount.MountFailure(status: r.status, stderr: "pack: " + r.stderr) }
    return r.stdoutText.trimmingCharacters(in: .whitespacesAndNewlines)
}

/// A real tmpfs of a given size (to fill a disk on purpose, or to make many small writes
/// cheap), unmounted when released. Needs root, as `make test` and CI run.
public final class Tmpfs: @unchecked Sendable {
    public let path: String
    private let dir: TempDir

    public init(size: String) throws {
        dir = TempDir("cce4-tmpfs")
        path = dir.sub("fs")
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        let m = try run("/bin/mount", ["-t", "tmpfs", "-o", "size=\(size)", "tmpfs", path])
        guard m.status == 0 else { throw TestMount.MountFailure(status: m.status, stderr: "mount tmpfs (tests must run as root): " + m.stderr) }
    }

    deinit { _ = try? run("/bin/umount", ["-l", path]) }
}

/// A test precondition that failed (a helper process, a fixture), with what went wrong.
public struct TestFailure: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// A real S3-compatible server on 127.0.0.1 for the s3:// tests: moto with signature checks
/// on (scripts/s3_test_server.py), started on first use, one per test process, and gone when
/// the process ends (the script serves until its standard input closes).
public final class S3TestServer: @unchecked Sendable {
    public static let shared: S3TestServer = {
        do { return try S3TestServer() } catch { fatalError("cannot start the S3 test server: \(error)") }
    }()

    public static let bucket = "cce4-test"
    public let endpoint: String
    public let accessKey: String
    public let secretKey: String
    public let region: String
    /// A shared credentials file whose [default] profile holds the test user's keys.
    public let credentialsFile: String
    private let process: Process
    private let input: Pipe
    private let dir = TempDir("cce4-s3")

    public struct StartFailure: Error, CustomStringConvertible { public let description: String }

    init() throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: Repo.python)
        p.arguments = [Repo.root + "/scripts/s3_test_server.py", Self.bucket]
        let out = Pipe(), input = Pipe()
        [out, input].forEach(closeOnExec)
        let log = dir.sub("server.log")
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        p.standardOutput = out
        p.standardInput = input
        p.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        try p.run()
        // The first line: {"endpoint": ..., "access_key": ..., "secret_key": ..., "region": ...}.
        var line = Data()
        let h = out.fileHandleForReading
        while true {
            let b = h.readData(ofLength: 1)
            if b.isEmpty || b == Data([0x0a]) { break }
            line.append(b)
        }
        guard let obj = try? JSONSerialization.jsonObject(with: line) as? [String: String],
              let e = obj["endpoint"], let a = obj["access_key"], let s = obj["secret_key"], let r = obj["region"] else {
            p.terminate()
            throw StartFailure(description: "s3_test_server.py did not start: " + ((try? String(contentsOfFile: log, encoding: .utf8)) ?? ""))
        }
        endpoint = e; accessKey = a; secretKey = s; region = r
        credentialsFile = dir.sub("credentials")
        try writeFile(credentialsFile, Array("[default]\naws_access_key_id = \(a)\naws_secret_access_key = \(s)\n".utf8))
        process = p
        self.input = input
    }

    deinit { try? input.fileHandleForWriting.close(); process.waitUntilExit() }

    /// `s3://cce4-test/NAME-RANDOM`: a fresh prefix, so tests never see each other's objects.
    public func freshURL(_ name: String) -> String {
        "s3://\(Self.bucket)/\(name)-\(UInt32.random(in: 0...UInt32.max))"
    }

    /// cce4fs -o options that reach this server.
    public var mountOptions: [String] { ["s3_endpoint=\(endpoint)", "s3_credentials_file=\(credentialsFile)"] }
    /// cce4 options that reach this server.
    public var cliOptions: [String] { ["--s3-endpoint", endpoint, "--s3-credentials-file", credentialsFile] }
    /// AWS_* variables that reach this server (with the caller's environment).
    public func environment(secret: String? = nil) -> [String: String] {
        var env = ProcessInfo.processInfo.environment
        env["AWS_ENDPOINT_URL"] = endpoint
        env["AWS_ACCESS_KEY_ID"] = accessKey
        env["AWS_SECRET_ACCESS_KEY"] = secret ?? secretKey
        env["AWS_REGION"] = region
        env.removeValue(forKey: "AWS_PROFILE"); env.removeValue(forKey: "AWS_SESSION_TOKEN")
        return env
    }
}

/// The fault-injecting proxy (scripts/s3_fault_proxy.py) in front of an S3 endpoint: it
/// forwards requests and, for a fraction of them, resets, answers 500 or 503 SlowDown,
/// stalls, or cuts the body short. `stop()` ends it (the server is then gone) and returns
/// how many requests it saw and how many it broke.
public final class FaultProxy: @unchecked Sendable {
    public let endpoint: String
    private let process: Process
    private let input: Pipe
    private let errors: Pipe
    private let stats = TempDir("cce4-proxy")

    public init(upstream: String, fault: String, rate: Double, stallSeconds: Double = 3, seed: Int = 1) throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: Repo.python)
        p.arguments = [Repo.root + "/scripts/s3_fault_proxy.py", upstream, fault, String(rate), "--stall", String(stallSeconds), "--seed", String(seed),
                       "--stats", stats.sub("stats.json")]
        let out = Pipe(), input = Pipe(), errors = Pipe()
        [out, input, errors].forEach(closeOnExec)
        p.standardOutput = out; p.standardInput = input; p.standardError = errors
        try p.run()
        var line = Data()
        while true {
            let b = out.fileHandleForReading.readData(ofLength: 1)
            if b.isEmpty || b == Data([0x0a]) { break }
            line.append(b)
        }
        guard let obj = try? JSONSerialization.jsonObject(with: line) as? [String: String], let e = obj["endpoint"] else {
            p.terminate()
            throw S3TestServer.StartFailure(description: "s3_fault_proxy.py did not start: " + String(decoding: errors.fileHandleForReading.availableData, as: UTF8.self))
        }
        endpoint = e; process = p; self.input = input; self.errors = errors
    }

    /// Stops the proxy; returns (requests, faults injected).
    @discardableResult
    public func stop() -> (requests: Int, faults: Int) {
        guard process.isRunning else { return (0, 0) }
        // SIGTERM, not only EOF on stdin: children other tests spawn meanwhile (a cce4fs mount,
        // say) can inherit our pipes' write ends, so neither EOF is sure to come. The counts
        // come back through a file for the same reason.
        try? input.fileHandleForWriting.close()
        process.terminate()
        process.waitUntilExit()
        let obj = (try? JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: stats.sub("stats.json"))))) as? [String: Int]
        return (obj?["requests"] ?? 0, obj?["faults"] ?? 0)
    }

    deinit { stop() }
}

/// A helper server script on loopback (Tests/interop/*.py) that prints one line — its address
/// or port — when it is ready. `stop()` ends it with SIGTERM: waiting for EOF on its stdin could
/// hang, since children other tests spawn meanwhile may inherit the pipe's write end.
public final class LoopbackScript: @unchecked Sendable {
    /// What the script printed first (trimmed).
    public let firstLine: String
    private let process = Process()
    private let input = Pipe()

    public init(_ script: String, _ args: [String] = []) throws {
        let out = Pipe()
        [out, input].forEach(closeOnExec)
        process.executableURL = URL(fileURLWithPath: Repo.python)
        process.arguments = [Repo.root + "/" + script] + args
        process.standardOutput = out
        process.standardInput = input
        try process.run()
        var line = Data()
        while true {
            let b = out.fileHandleForReading.readData(ofLength: 1)
            if b.isEmpty || b == Data([0x0a]) { break }
            line.append(b)
        }
        firstLine = String(decoding: line, as: UTF8.self).trimmingCharacters(in: .whitespaces)
        guard !firstLine.isEmpty else {
            process.terminate()
            throw TestFailure("\(script) did not start")
        }
    }

    public func stop() {
        guard process.isRunning else { return }
        try? input.fileHandleForWriting.close()
        process.terminate()
        process.waitUntilExit()
    }

    deinit { stop() }
}

/// Tests/interop/http_echo.py, started once per test process: echoes POST/PUT bodies, serves
/// GET /bytes?n=N and GET /flaky?id=X&fail=K.
public enum EchoServer {
    public static let base: String = {
        do {
            let s = try LoopbackScript("Tests/interop/http_echo.py")
            guard let port = Int(s.firstLine) else { fatalError("http_echo.py printed '\(s.firstLine)', not a port") }
            keep = s
            return "http://127.0.0.1:\(port)"
        } catch { fatalError("cannot start http_echo.py: \(error)") }
    }()
    nonisolated(unsafe) private static var keep: LoopbackScript?
}

/// Which of the first `pages` pages of the open file `fd` are in the page cache (mincore
/// over a shared mapping); empty if the file cannot be mapped.
public func residentPages(_ fd: Int32, pages: Int) -> [Bool] {
    let len = pages * 4096
    guard let map = mmap(nil, len, PROT_READ, MAP_SHARED, fd, 0), map != MAP_FAILED else { return [] }
    defer { munmap(map, len) }
    var vec = [UInt8](repeating: 0, count: pages)
    guard mincore(map, len, &vec) == 0 else { return [] }
    return vec.map { $0 & 1 == 1 }
}

/// Drops the clean pages of the file at `path` from the page cache (POSIX_FADV_DONTNEED).
public func dropPageCache(_ path: String) {
    let fd = open(path, O_RDONLY)
    guard fd >= 0 else { return }
    _ = posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED)
    close(fd)
}

/// Polls `condition` every 20 ms until it holds or `seconds` pass; returns whether it held.
public func eventually(within seconds: Double = 5, _ condition: () -> Bool) -> Bool {
    let end = Date().addingTimeInterval(seconds)
    while Date() < end {
        if condition() { return true }
        usleep(20_000)
    }
    return condition()
}
