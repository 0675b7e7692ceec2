// cce4 attest: verify TDX / SEV-SNP / simulated evidence offline, and make simulated evidence.
import ArgumentParser
import Attestation
import Envelope
import Foundation
#if canImport(Glibc)
import Glibc
#endif

struct AttestCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "attest",
        abstract: "Verify remote-attestation evidence (Intel TDX, AMD SEV-SNP), or make simulated evidence.",
        subcommands: [Verify.self, Simulate.self])

    /// Exit status when the evidence verifies but the policy refuses it.
    static let refusedByPolicy: Int32 = 1

    struct Verify: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Verify evidence with offline collateral, print its claims and the policy's verdict.",
            discussion: """
            The kind of evidence is detected: a TDX quote (v4/v5), an SEV-SNP report (1184 bytes), or \
            a simulated report. Exit status: 0 verified and accepted; 1 verified but refused by the \
            policy; 65 did not verify (the line says which check failed); 66 FILE, DIR, a collateral \
            file (the message says where to fetch it) or the policy file missing; 64 bad usage or a \
            bad policy file. See docs/attestation.md.
            """)

        @Argument(help: ArgumentHelp("The evidence: a quote or report file.", valueName: "file"))
        var file: String

        @Option(help: ArgumentHelp("Collateral directory (TDX: tcb_info.json, qe_identity.json, pck_crl.der, root_crl.der; SEV-SNP: vcek.der, cert_chain.pem).", valueName: "dir"))
        var collateral: String?

        @Option(help: ArgumentHelp("Verify as of this time: ISO 8601 (2023-06-20T00:00:00Z) or @UNIX_SECONDS. Default: now.", valueName: "time"))
        var at: String?

        @Option(help: ArgumentHelp("A policy file (JSON, see docs/attestation.md); the options below add to it.", valueName: "file"))
        var policy: String?

        @Option(name: .customLong("measurement"), help: ArgumentHelp("An allowed MRTD / MEASUREMENT (96 hex digits); repeatable. Required unless --any-measurement.", valueName: "hex"))
        var measurements: [String] = []

        @Option(help: ArgumentHelp("The REPORTDATA the guest must have bound (128 hex digits). Required unless --any-report-data.", valueName: "hex"))
        var reportData: String?

        @Option(name: .customLong("accept-tcb"), help: ArgumentHelp("A TDX TCB status to accept (UpToDate, SWHardeningNeeded, …); repeatable. Default: UpToDate.", valueName: "status"))
        var acceptTCB: [String] = []

        @Option(help: ArgumentHelp("SEV-SNP minimum TCB, as bl=N,tee=N,snp=N,ucode=N.", valueName: "tcb"))
        var minSnpTcb: String?

        @Flag(help: "Accept any measurement (to inspect evidence, not to trust it).")
        var anyMeasurement = false

        @Flag(help: "Accept any report data (to inspect evidence, not to trust it).")
        var anyReportData = false

        @Flag(help: "Accept SEV-SNP evidence at any TCB when no --min-snp-tcb is given.")
        var anySnpTcb = false

        @Flag(help: "Accept debuggable guests (never in production).")
        var allowDebug = false

        @Flag(help: "Accept simulated evidence (development only; the claims say 'simulated').")
        var allowSimulated = false

        @Flag(help: "Accept collateral without CRLs (revocation then goes unchecked).")
        var allowNoCrl = false

        /// The policy file (or the default policy), with the options applied on top: flags only
        /// relax, --measurement adds to the allow-list, the others replace.
        func makePolicy() throws -> Policy {
            var p = Policy()
            if let policy {
                guard let data = FileManager.default.contents(atPath: policy) else {
                    throw Failure(description: "cannot read policy file \(policy)", exitCode: Failure.noInput)
                }
                do { p = try Policy(json: Array(data)) } catch { throw Failure(description: "--policy \(policy): \(error)", exitCode: Failure.usage) }
            }
            if anyMeasurement { p.allowAnyMeasurement = true }
            if anyReportData { p.allowAnyReportData = true }
            if anySnpTcb { p.allowAnySNPTCB = true }
            if allowDebug { p.allowDebug = true }
            if allowSimulated { p.allowSimulated = true }
            if allowNoCrl { p.requireRevocationCheck = false }
            p.allowedMeasurements += try measurements.map { try parseHex($0, bytes: 48, option: "--measurement") }
            if let reportData { p.expectedReportData = try parseHex(reportData, bytes: 64, option: "--report-data") }
            if !acceptTCB.isEmpty {
                p.acceptedTCBStatuses = Set(try acceptTCB.map { s in
                    guard let t = TCBStatus(rawValue: s) else {
                        throw ValidationError("--accept-tcb \(s): one of \(TCBStatus.allCases.map(\.rawValue).joined(separator: ", "))")
                    }
                    return t
                })
            }
            if let m = minSnpTcb {
                var d: [String: UInt8] = [:]
                for part in m.split(separator: ",") {
                    let kv = part.split(separator: "=")
                    guard kv.count == 2, let v = UInt8(kv[1]) else { throw ValidationError("--min-snp-tcb: bl=N,tee=N,snp=N,ucode=N") }
                    d[String(kv[0])] = v
                }
                guard let bl = d["bl"], let tee = d["tee"], let snp = d["snp"], let uc = d["ucode"] else { throw ValidationError("--min-snp-tcb: bl=N,tee=N,snp=N,ucode=N") }
                p.minimumSNPTCB = SNPTCB(bootloader: bl, tee: tee, snp: snp, microcode: uc, fmc: d["fmc"])
            }
            return p
        }

        func run() throws {
            let time = try at.map(parseTime) ?? Date()
            try guarded {
                let policy: Policy
                do { policy = try makePolicy() } catch let e as ValidationError { throw Failure(description: e.message, exitCode: Failure.usage) }
                guard let data = FileManager.default.contents(atPath: file) else {
                    throw Failure(description: "cannot read evidence file \(file)", exitCode: Failure.noInput)
                }
                if let collateral {
                    var isDir: ObjCBool = false
                    guard FileManager.default.fileExists(atPath: collateral, isDirectory: &isDir), isDir.boolValue else {
                        throw Failure(description: "collateral directory \(collateral) does not exist", exitCode: Failure.noInput)
                    }
                }
                let result: AttestationResult
                do {
                    let bytes = Array(data)
                    let source = try AttestationVerifier.collateral(for: bytes, directory: collateral)
                    result = try AttestationVerifier.verify(bytes, collateral: source, policy: policy, at: time)
                } catch AttestationError.missingCollateral(let d) {
                    throw Failure(description: "missing collateral: \(d) (pass --collateral DIR)", exitCode: Failure.noInput)
                } catch let e as AttestationError {
                    print(line("verdict", "INVALID (\(e.check?.rawValue ?? "error"))"), terminator: "")
                    throw Failure(description: "evidence did not verify: \(e)", exitCode: Failure.dataError)
                }
                print(describe(result.claims, at: time), terminator: "")
                switch result.verdict {
                case .accepted:
                    print(line("verdict", "ACCEPTED"), terminator: "")
                case .refused(let why):
                    print(line("verdict", "REFUSED by policy: " + why.map(\.description).joined(separator: "; ")), terminator: "")
                    throw ExitCode(AttestCommand.refusedByPolicy)
                }
            }
        }
    }

    struct Simulate: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Make a simulated report signed by a local key (for machines without a TEE).",
            discussion: """
            Simulated evidence proves nothing: anyone can make one. Verifiers refuse it unless told \
            --allow-simulated, and then label the claims 'simulated'. The key file (96 bytes, mode \
            0600) is created if it does not exist. Format: docs/attestation.md.
            """)

        @Option(name: .customLong("key-file"), help: ArgumentHelp("The simulated signing key (created if missing).", valueName: "path"))
        var keyFile: String

        @Option(help: ArgumentHelp("The 64 bytes to bind, as 128 hex digits. Default: zeros.", valueName: "hex"))
        var reportData: String?

        @Option(help: ArgumentHelp("The measurement to claim, 96 hex digits. Default: zeros.", valueName: "hex"))
        var measurement: String?

        @Option(name: [.customShort("o"), .customLong("output")], help: ArgumentHelp("Where to write the report.", valueName: "file"))
        var output: String

        func run() throws {
            try guarded {
                let data = try reportData.map { try parseHex($0, bytes: 64, option: "--report-data") } ?? [UInt8](repeating: 0, count: 64)
                let m = try measurement.map { try parseHex($0, bytes: 48, option: "--measurement") } ?? [UInt8](repeating: 0, count: 48)
                let key: SimulatedKey
                if let bytes = FileManager.default.contents(atPath: keyFile) {
                    key = try SimulatedKey(fileBytes: Array(bytes))
                } else {
                    key = try SimulatedKey()
                    var bytes = key.fileBytes()
                    defer { for i in bytes.indices { bytes[i] = 0 } }
                    let fd = open(keyFile, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0o600)
                    guard fd >= 0 else { throw Failure(description: "cannot create key file \(keyFile): \(String(cString: strerror(errno)))", exitCode: Failure.cantCreate) }
                    defer { close(fd) }
                    let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress!, $0.count) }
                    guard n == bytes.count else { throw Failure(description: "cannot write key file \(keyFile)", exitCode: Failure.ioError) }
                }
                let e = try SimulatedProvider(key: key, measurement: m).evidence(reportData: data)
                guard FileManager.default.createFile(atPath: output, contents: Data(e.outblob)) else {
                    throw Failure(description: "cannot write \(output)", exitCode: Failure.cantCreate)
                }
            }
        }
    }
}


private func parseTime(_ s: String) throws -> Date {
    if s.hasPrefix("@") {
        guard let t = Int64(s.dropFirst()) else { throw ValidationError("--at \(s): @ takes whole Unix seconds") }
        return Date(timeIntervalSince1970: TimeInterval(t))
    }
    let f = ISO8601DateFormatter()
    guard let d = f.date(from: s) else { throw ValidationError("--at \(s): use ISO 8601 (2023-06-20T00:00:00Z) or @UNIX_SECONDS") }
    return d
}


/// The claims, one "name: value" line each.
func describe(_ c: Claims, at time: Date) -> String {
    var lines: [(String, String)] = [("platform", c.platform.rawValue + (c.simulated ? " (SIMULATED: no hardware vouches for it)" : ""))]
    lines.append((c.platform == .tdx ? "mrtd" : "measurement", Hex.encode(c.measurement)))
    for (i, r) in c.rtmrs.enumerated() { lines.append(("rtmr\(i)", Hex.encode(r))) }
    if let m = c.mrConfigID { lines.append(("mrconfigid", Hex.encode(m))) }
    if let h = c.hostData { lines.append(("host_data", Hex.encode(h))) }
    lines.append(("report_data", Hex.encode(c.reportData)))
    if let a = c.tdAttributes { lines.append(("td_attributes", Hex.encode(a))) }
    if let p = c.snpPolicy { lines.append(("policy", String(format: "0x%llx", p))) }
    if let v = c.vmpl { lines.append(("vmpl", "\(v)")) }
    lines.append(("debug", c.debug ? "YES" : "no"))
    lines.append(("tcb", c.tcb))
    lines.append(("tcb_status", c.tcbStatus.rawValue))
    if !c.advisoryIDs.isEmpty { lines.append(("advisories", c.advisoryIDs.joined(separator: ","))) }
    lines.append(("revocation", c.simulated ? "n/a" : c.revocationChecked ? "checked (CRLs)" : "NOT checked (no CRLs)"))
    let f = ISO8601DateFormatter()
    lines.append(("verified_at", f.string(from: time)))
    if let n = c.collateralNextUpdate { lines.append(("collateral_next_update", f.string(from: n))) }
    return lines.map { line($0.0, $0.1) }.joined()
}

/// "name:   value\n", values aligned in one column.
func line(_ name: String, _ value: String) -> String {
    name + ":" + String(repeating: " ", count: max(1, 24 - name.count)) + value + "\n"
}
