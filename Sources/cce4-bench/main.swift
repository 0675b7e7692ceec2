// cce4-bench: measurements behind cce4's tunables.
//
// `cce4-bench segments` chooses the streaming AEAD's default ciphertext segment size: for
// each candidate it encrypts one in-memory random file and measures what a filesystem
// reading it would see, with every request decrypting exactly the segments it spans
// (no plaintext segment cache), as `StreamDecryptor.decrypt` is used by the reader.
import ArgumentParser
import Envelope
import Foundation

struct CCE4Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cce4-bench",
        abstract: "Benchmarks for cce4's tunables.",
        subcommands: [Segments.self, PlaneLoad.self]
    )
}

struct Segments: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure streaming-AEAD decryption per ciphertext segment size.",
        discussion: """
            For each segment size, encrypts --file-mib MiB of random plaintext once, then, \
            after one untimed warm-up pass (which also checks the decrypted bytes), runs each \
            measurement --runs times and reports the median (min–max) over the runs:
              - sequential decrypt throughput, front to back in 128 KiB requests (the FUSE \
            default max read) and in 1 MiB requests, each request decrypting only the segments it spans;
              - random 4 KiB reads at uniformly random offsets: median and p99 latency, read amplification;
              - random 128 KiB reads: median (and p99) latency, read amplification;
              - ciphertext overhead (header + one 16-byte tag per segment) relative to the plaintext.
            Read amplification is ciphertext bytes touched / plaintext bytes requested. \
            Sizes accept K/M suffixes (powers of 1024). Timing uses ContinuousClock (monotonic).
            """
    )

    @Option(help: "Comma-separated ciphertext segment sizes in bytes (K/M suffixes allowed).")
    var sizes: String = "4096,16384,65536,262144,1048576"

    @Option(name: .customLong("file-mib"), help: "Plaintext file size in MiB.")
    var fileMiB: Int = 256

    @Option(help: "Timed runs per measurement (after one warm-up pass).")
    var runs: Int = 5

    @Option(name: .customLong("random-reads"), help: "Random 4 KiB reads per run.")
    var randomReads: Int = 20000

    @Option(name: .customLong("random-large-reads"), help: "Random 128 KiB reads per run.")
    var randomLargeReads: Int = 2000

    @Option(help: "Seed for the plaintext and the random offsets (the key is always fresh).")
    var seed: UInt64 = 0xCCE4

    @Option(help: "Also write the results as JSON to this path.")
    var json: String?

    func validate() throws {
        let parsed = try parseSizes(sizes)
        for s in parsed where s < StreamParameters.minimumSegmentSize || s > StreamParameters.maximumSegmentSize {
            throw ValidationError("segment size \(s) is outside \(StreamParameters.minimumSegmentSize)...\(StreamParameters.maximumSegmentSize)")
        }
        guard fileMiB >= 1, fileMiB <= 8192 else { throw ValidationError("--file-mib must be 1...8192") }
        guard runs >= 1 else { throw ValidationError("--runs must be at least 1") }
        guard randomReads >= 1, randomLargeReads >= 1 else { throw ValidationError("random read counts must be at least 1") }
    }

    func run() throws {
        let segmentSizes = try parseSizes(sizes)
        let fileSize = fileMiB << 20
        var rng = Xoshiro256(seed: seed)

        log("generating \(fileMiB) MiB of random plaintext")
        let plaintext = [UInt8](unsafeUninitializedCapacity: fileSize) { buf, count in
            let words = fileSize / 8
            let raw = UnsafeMutableRawBufferPointer(buf)
            for i in 0..<words { raw.storeBytes(of: rng.next(), toByteOffset: i * 8, as: UInt64.self) }
            for i in (words * 8)..<fileSize { buf[i] = UInt8(truncatingIfNeeded: rng.next()) }
            count = fileSize
        }
        let key = try SecureBytes.random(count: StreamParameters.keyLength)
        let ad = Array("cce4-bench segments".utf8)

        // The same offsets for every segment size (run r uses set r), so sizes are compared on equal reads.
        let small = 4 << 10, large = 128 << 10
        func offsets(_ n: Int, length: Int, salt: UInt64) -> [[Int64]] {
            (0...runs).map { r in
                var g = Xoshiro256(seed: seed &+ salt &+ UInt64(r) &* 0x9E37_79B9)
                return (0..<n).map { _ in Int64.random(in: 0...Int64(fileSize - length), using: &g) }
            }
        }
        let smallOffsets = offsets(randomReads, length: small, salt: 1)
        let largeOffsets = offsets(randomLargeReads, length: large, salt: 2)

        var results: [SegmentResult] = []
        for segmentSize in segmentSizes {
            let params = try StreamParameters(segmentSize: segmentSize)
            log("segment \(formatBytes(segmentSize)): encrypting")
            let encStart = ContinuousClock.now
            let ciphertext = try StreamEncryptor.encrypt(plaintext, key: key, associatedData: ad, parameters: params)
            let encSeconds = seconds(ContinuousClock.now - encStart)
            let header = try ciphertext.withUnsafeBytes { try StreamHeader(parsing: $0) }
            let dec = try StreamDecryptor(key: key, associatedData: ad, header: header,
                                          plaintextSize: Int64(fileSize), parameters: params)
            var out = [UInt8](repeating: 0, count: 1 << 20)

            var seq128: [Double] = [], seq1M: [Double] = []
            var r4p50: [Double] = [], r4p99: [Double] = [], r128p50: [Double] = [], r128p99: [Double] = []
            var seqAmp128 = 0.0, seqAmp1M = 0.0, amp4: [Double] = [], amp128: [Double] = []

            try plaintext.withUnsafeBytes { pt in
                try ciphertext.withUnsafeBytes { ct in
                    try out.withUnsafeMutableBytes { o in
                        let bench = Bench(dec: dec, ct: ct, out: o, size: Int64(fileSize))
                        for run in 0...runs {
                            let warm = run == 0
                            let verify: UnsafeRawBufferPointer? = warm ? pt : nil
                            log("segment \(formatBytes(segmentSize)): \(warm ? "warm-up" : "run \(run)/\(runs)")")
                            let s128 = try bench.sequential(request: large, verify: verify)
                            let s1M = try bench.sequential(request: 1 << 20, verify: verify)
                            let rs = try bench.random(smallOffsets[run], length: small, verify: verify)
                            let rl = try bench.random(largeOffsets[run], length: large, verify: verify)
                            if warm { continue }
                            seq128.append(Double(fileSize) / 1048576 / s128.seconds)
                            seq1M.append(Double(fileSize) / 1048576 / s1M.seconds)
                            seqAmp128 = s128.amplification
                            seqAmp1M = s1M.amplification
                            r4p50.append(percentile(rs.latenciesUs, 0.50))
                            r4p99.append(percentile(rs.latenciesUs, 0.99))
                            amp4.append(rs.amplification)
                            r128p50.append(percentile(rl.latenciesUs, 0.50))
                            r128p99.append(percentile(rl.latenciesUs, 0.99))
                            amp128.append(rl.amplification)
                        }
                    }
                }
            }

            let overhead = Double(ciphertext.count - fileSize) / Double(fileSize) * 100
            results.append(SegmentResult(
                segmentSize: segmentSize,
                plaintextPerSegment: params.segmentPlaintext,
                overheadPercent: overhead,
                encryptMiBps: Double(fileSize) / 1048576 / encSeconds,
                sequential128KiB: Sequential(mibPerSecond: Summary(seq128), amplification: seqAmp128),
                sequential1MiB: Sequential(mibPerSecond: Summary(seq1M), amplification: seqAmp1M),
                random4KiB: RandomReads(reads: randomReads, p50Microseconds: Summary(r4p50), p99Microseconds: Summary(r4p99),
                                        amplification: mean(amp4)),
                random128KiB: RandomReads(reads: randomLargeReads, p50Microseconds: Summary(r128p50), p99Microseconds: Summary(r128p99),
                                          amplification: mean(amp128))
            ))
        }

        printTable(results)

        if let path = json {
            let report = Report(
                benchmark: "segments",
                fileMiB: fileMiB, runs: runs, randomReads: randomReads, randomLargeReads: randomLargeReads,
                seed: seed, processors: ProcessInfo.processInfo.activeProcessorCount,
                statistic: "median, min and max over runs; latencies per run are the run's p50/p99",
                results: results
            )
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            try encoder.encode(report).write(to: URL(fileURLWithPath: path))
            log("wrote \(path)")
        }
    }

    private func printTable(_ results: [SegmentResult]) {
        print("")
        print("cce4-bench segments: \(fileMiB) MiB file, \(runs) runs (median (min–max)), no segment cache")
        print("")
        let h1 = ["segment", "overhead", "seq 128K MiB/s", "seq 1M MiB/s", "seq amp 128K/1M", "enc MiB/s"]
        var rows1: [[String]] = []
        for r in results {
            rows1.append([
                formatBytes(r.segmentSize),
                String(format: "%.3f%%", r.overheadPercent),
                r.sequential128KiB.mibPerSecond.format("%.0f"),
                r.sequential1MiB.mibPerSecond.format("%.0f"),
                String(format: "%.2f / %.2f", r.sequential128KiB.amplification, r.sequential1MiB.amplification),
                String(format: "%.0f", r.encryptMiBps),
            ])
        }
        printRows(h1, rows1)
        print("")
        let h2 = ["segment", "4K p50 µs", "4K p99 µs", "4K amp", "128K p50 µs", "128K p99 µs", "128K amp"]
        var rows2: [[String]] = []
        for r in results {
            rows2.append([
                formatBytes(r.segmentSize),
                r.random4KiB.p50Microseconds.format("%.1f"),
                r.random4KiB.p99Microseconds.format("%.1f"),
                String(format: "%.2f", r.random4KiB.amplification),
                r.random128KiB.p50Microseconds.format("%.0f"),
                r.random128KiB.p99Microseconds.format("%.0f"),
                String(format: "%.2f", r.random128KiB.amplification),
            ])
        }
        printRows(h2, rows2)
    }
}

// MARK: - Measurement

/// One stream's decryptor over its ciphertext, with a reusable output buffer.
struct Bench {
    let dec: StreamDecryptor
    let ct: UnsafeRawBufferPointer
    let out: UnsafeMutableRawBufferPointer
    let size: Int64

    /// Decrypts plaintext `range` from the ciphertext segments it spans, as a filesystem read would.
    @inline(__always)
    private func read(_ range: Range<Int64>) throws -> (bytes: Int, touched: Int64) {
        let c = dec.ciphertextRange(forPlaintext: range)
        let n = try dec.decrypt(range, ciphertext: UnsafeRawBufferPointer(rebasing: ct[Int(c.lowerBound)..<Int(c.upperBound)]), into: out)
        return (n, Int64(c.count))
    }

    private func check(_ range: Range<Int64>, _ n: Int, against pt: UnsafeRawBufferPointer?) throws {
        guard let pt else { return }
        guard n == range.count, memcmp(out.baseAddress!, pt.baseAddress! + Int(range.lowerBound), n) == 0 else {
            throw ValidationError("decrypted bytes differ from the plaintext at \(range)")
        }
    }

    /// Reads the whole file front to back in `request`-byte reads.
    func sequential(request: Int, verify: UnsafeRawBufferPointer?) throws -> (seconds: Double, amplification: Double) {
        var off: Int64 = 0, touched: Int64 = 0
        let start = ContinuousClock.now
        while off < size {
            let r = off..<min(off + Int64(request), size)
            let (n, t) = try read(r)
            try check(r, n, against: verify)
            touched += t
            off = r.upperBound
        }
        let elapsed = seconds(ContinuousClock.now - start)
        return (elapsed, Double(touched) / Double(size))
    }

    /// Times each `length`-byte read at the given offsets; latencies in microseconds.
    func random(_ offsets: [Int64], length: Int, verify: UnsafeRawBufferPointer?) throws -> (latenciesUs: [Double], amplification: Double) {
        var lat = [Double](repeating: 0, count: offsets.count)
        var touched: Int64 = 0
        let clock = ContinuousClock()
        for (i, off) in offsets.enumerated() {
            let r = off..<off + Int64(length)
            let t0 = clock.now
            let (n, t) = try read(r)
            let t1 = clock.now
            lat[i] = seconds(t1 - t0) * 1e6
            try check(r, n, against: verify)
            touched += t
        }
        lat.sort()
        return (lat, Double(touched) / Double(offsets.count * length))
    }
}

// MARK: - Results

struct Summary: Codable {
    let median: Double, min: Double, max: Double
    init(_ xs: [Double]) {
        let s = xs.sorted()
        median = s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
        min = s.first!
        max = s.last!
    }
    func format(_ f: String) -> String {
        String(format: f, median) + " (" + String(format: f, min) + "–" + String(format: f, max) + ")"
    }
}

struct Sequential: Codable {
    let mibPerSecond: Summary
    /// Ciphertext bytes decrypted / plaintext bytes read over the whole pass.
    let amplification: Double
}

struct RandomReads: Codable {
    let reads: Int
    let p50Microseconds: Summary
    let p99Microseconds: Summary
    let amplification: Double
}

struct SegmentResult: Codable {
    let segmentSize: Int
    let plaintextPerSegment: Int
    let overheadPercent: Double
    /// One untimed-by-runs encryption pass of the whole file (informational).
    let encryptMiBps: Double
    let sequential128KiB: Sequential
    let sequential1MiB: Sequential
    let random4KiB: RandomReads
    let random128KiB: RandomReads
}

struct Report: Codable {
    let benchmark: String
    let fileMiB: Int, runs: Int, randomReads: Int, randomLargeReads: Int
    let seed: UInt64
    let processors: Int
    let statistic: String
    let results: [SegmentResult]
}

// MARK: - Helpers

/// xoshiro256**: fast, seedable; only for test data and offsets, never for keys.
struct Xoshiro256: RandomNumberGenerator {
    private var s: (UInt64, UInt64, UInt64, UInt64)
    init(seed: UInt64) {
        var x = seed
        func splitmix() -> UInt64 {
            x &+= 0x9E37_79B9_7F4A_7C15
            var z = x
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        s = (splitmix(), splitmix(), splitmix(), splitmix())
    }
    mutating func next() -> UInt64 {
        let result = ((s.1 &* 5) << 7 | (s.1 &* 5) >> 57) &* 9
        let t = s.1 << 17
        s.2 ^= s.0; s.3 ^= s.1; s.1 ^= s.2; s.0 ^= s.3
        s.2 ^= t
        s.3 = s.3 << 45 | s.3 >> 19
        return result
    }
}

func seconds(_ d: Duration) -> Double {
    Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18
}

/// Nearest-rank percentile of an ascending array.
func percentile(_ sorted: [Double], _ p: Double) -> Double {
    let rank = Int((p * Double(sorted.count)).rounded(.up))
    return sorted[min(max(rank, 1), sorted.count) - 1]
}

func mean(_ xs: [Double]) -> Double { xs.reduce(0, +) / Double(xs.count) }

func parseSizes(_ text: String) throws -> [Int] {
    let parts = text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
    guard !parts.isEmpty else { throw ValidationError("--sizes is empty") }
    return try parts.map { p in
        var digits = Substring(p), shift = 0
        switch p.last?.uppercased() {
        case "K": shift = 10; digits = digits.dropLast()
        case "M": shift = 20; digits = digits.dropLast()
        default: break
        }
        guard let n = Int(digits), n > 0 else { throw ValidationError("bad segment size '\(p)'") }
        return n << shift
    }
}

func formatBytes(_ n: Int) -> String {
    if n % (1 << 20) == 0 { return "\(n >> 20) MiB" }
    if n % (1 << 10) == 0 { return "\(n >> 10) KiB" }
    return "\(n) B"
}

func printRows(_ header: [String], _ rows: [[String]]) {
    let widths = header.indices.map { c in ([header[c]] + rows.map { $0[c] }).map(\.count).max()! }
    func line(_ cells: [String]) -> String {
        cells.enumerated().map { c, s in
            let pad = String(repeating: " ", count: widths[c] - s.count)
            return c == 0 ? s + pad : pad + s
        }.joined(separator: "  ")
    }
    print(line(header))
    print(widths.map { String(repeating: "-", count: $0) }.joined(separator: "  "))
    rows.forEach { print(line($0)) }
}

func log(_ message: String) {
    FileHandle.standardError.write(Data(("cce4-bench: " + message + "\n").utf8))
}

CCE4Bench.main()
