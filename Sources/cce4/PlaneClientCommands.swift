// cce4 dataset push and cce4 plane …: the Privacy Plane's client commands.
import ArgumentParser
import Dataset
import Envelope
import Foundation
import PlaneClient
import Wallet
#if canImport(Glibc)
import Glibc
#endif

/// Where the plane is and who signs in to it.
struct PlaneOptions: ParsableArguments {
    @Option(help: ArgumentHelp("The Privacy Plane's URL, e.g. https://plane.example:8443. Default: $CCE4_PLANE.", valueName: "url"))
    var plane: String?

    @Option(name: [.customLong("keystore"), .customLong("wallet")],
            help: ArgumentHelp("Your wallet: a keystore v3 file (`cce4 wallet new`, geth, MetaMask); --wallet is the same. Default: $CCE4_KEYSTORE.", valueName: "file"))
    var wallet: String?

    @Option(help: ArgumentHelp("A file whose first line is the keystore's password. Default: $CCE4_WALLET_PASSWORD, else a prompt on the terminal.", valueName: "file"))
    var passwordFile: String?

    @Option(help: ArgumentHelp("Sign in for this EIP-4361 domain instead of the URL's host:port (a plane behind a proxy under another name).", valueName: "host[:port]"))
    var siweDomain: String?

    func client() throws -> PlaneClient {
        let url = try optionOrEnvironment(plane, "CCE4_PLANE", missing: "no plane: pass --plane URL (or set CCE4_PLANE)")
        do { return try PlaneClient(baseURL: url) } catch { throw Failure(description: "\(error)", exitCode: Failure.usage) }
    }

    /// The wallet's key (keystore + password, as every signing command reads them).
    func key() throws -> PrivateKey {
        let path = try optionOrEnvironment(wallet, "CCE4_KEYSTORE", missing: "no wallet: pass --wallet KEYSTORE (or set CCE4_KEYSTORE); make one with `cce4 wallet new --keystore FILE`")
        var args = ["--keystore", path]
        if let p = passwordFile { args += ["--password-file", p] }
        return try SignerOptions.parse(args).load()
    }

    /// Signs in and returns the client holding the token.
    func signedIn(_ key: PrivateKey) throws -> PlaneClient {
        let c = try client()
        try planeCall { _ = try c.signIn(wallet: key, expectedDomain: siweDomain) }
        return c
    }
}

/// Runs plane calls, turning `PlaneClientError` into a `Failure` with a documented status:
/// 77 refused (401/403), 66 not found (404), 65 the plane refused the data (other 4xx,
/// e.g. an invalid archive), 74 transport and server failures.
func planeCall<R>(_ body: () throws -> R) throws -> R {
    do { return try body() } catch let e as PlaneClientError {
        let code: Int32
        switch e.status {
        case 401?, 403?: code = Failure.noPermission
        case 404?: code = Failure.noInput
        case let s? where (400..<500).contains(s): code = Failure.dataError
        default: code = Failure.ioError
        }
        throw Failure(description: e.message, exitCode: code)
    }
}

/// Upload progress: a redrawn line on a terminal, a line every few seconds otherwise.
final class UploadProgress: @unchecked Sendable {
    let line: ProgressLine
    let quiet: Bool
    let tty: Bool
    var lastLine = Date.distantPast

    init(quiet: Bool) {
        self.quiet = quiet
        self.tty = isatty(2) == 1
        self.line = ProgressLine(enabled: !quiet)
    }

    func text(_ sent: Int64, _ total: Int64) -> String {
        let rate = Double(sent) / max(line.elapsed, 0.001)
        let pct = total > 0 ? Double(sent) * 100 / Double(total) : 100
        return String(format: "pushing: %3.0f%%  %@ / %@  %@/s", pct, formatBytes(sent), formatBytes(total), formatBytes(Int64(rate)))
    }

    func update(_ sent: Int64, _ total: Int64) {
        guard !quiet else { return }
        if tty {
            let bar = 24, filled = total > 0 ? Int(Double(bar) * Double(sent) / Double(total)) : bar
            line.update("[" + String(repeating: "#", count: filled) + String(repeating: ".", count: bar - filled) + "] " + text(sent, total))
        } else if Date().timeIntervalSince(lastLine) >= 5 || sent == total {
            lastLine = Date()
            FileHandle.standardError.write(Data((text(sent, total) + "\n").utf8))
        }
    }

    func finish(_ text: String) {
        guard !quiet else { return }
        if tty { line.finish(text) } else { FileHandle.standardError.write(Data((text + "\n").utf8)) }
    }
}

extension DatasetCommand {
    struct Push: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Upload a directory to the Privacy Plane as a new version of a dataset; print its root hash.",
            discussion: """
            The directory is streamed as a tar archive (POSIX pax, deterministic order; regular \
            files, directories and symlinks only) in one HTTP PUT: nothing is staged on disk, \
            and the plane encrypts it as it reads, so plaintext never reaches the store. You sign \
            in with your wallet (EIP-4361); the plane records the version on the ledger as your \
            operator, which needs your one-time operator approval (EIP-712): pass --approve to \
            sign it when the plane asks. Progress goes to standard error (a bar on a terminal, a \
            line every 5 s otherwise); the root hash to standard output. \
            Exit status: 0 pushed; 64 bad usage; 65 the plane refused the data; 66 missing \
            directory or dataset; 74 network or plane failure; 77 sign-in or approval refused.
            """)

        @Argument(help: ArgumentHelp("The directory to push.", valueName: "src-dir"))
        var source: String

        @OptionGroup var plane: PlaneOptions

        @Option(help: ArgumentHelp("The dataset id (a-z, 0-9, '.', '-', '_').", valueName: "id"))
        var dataset: String

        @Flag(help: "Create the dataset first (owned by your wallet); an existing dataset is used as it is.")
        var create = false

        @Option(help: ArgumentHelp("With --create: the policy hash to register with the dataset (64 hex digits).", valueName: "hex"))
        var policyHash: String?

        @Flag(help: "Sign the plane's operator approval (EIP-712) before pushing: needed once per wallet, and again after it expires.")
        var approve = false

        @Flag(name: .shortAndLong, help: "No progress output.")
        var quiet = false

        func validate() throws {
            do { try AssociatedData.validateDatasetID(dataset) } catch { throw ValidationError("--dataset: \(error)") }
            if let p = policyHash, (try? SHA256Digest(hex: p)) == nil { throw ValidationError("--policy-hash must be 64 hex digits") }
            if policyHash != nil && !create { throw ValidationError("--policy-hash goes with --create") }
        }

        func run() throws {
            try guarded {
                var isDir: ObjCBool = false
                guard FileManager.default.fileExists(atPath: source, isDirectory: &isDir), isDir.boolValue else {
                    throw Failure(description: "\(source) is not a directory; pass the directory to push", exitCode: Failure.noInput)
                }
                // Scan first: a FIFO or an unreadable file fails before any network call.
                let probe = try TarWriter(directory: source)
                let key = try plane.key()
                let client = try plane.signedIn(key)
                // The plane acts on the ledger for you only once approved: approve before creating.
                if approve {
                    let r = try planeCall { try client.approveOperator(wallet: key) }
                    if !quiet { FileHandle.standardError.write(Data("approved \(r.operator) as operator for \(r.owner)\(r.expires == 0 ? " (revoked)" : " until \(r.expires)")\n".utf8)) }
                }
                if create {
                    try planeCall {
                        do {
                            _ = try client.createDataset(id: dataset, policyHash: policyHash?.lowercased())
                        } catch let e as PlaneClientError where e.status == 409 {
                            // Already there: push to it (the plane checks that it is yours).
                        }
                    }
                }
                let progress = UploadProgress(quiet: quiet)
                let v = try planeCall {
                    try client.pushVersion(id: dataset, tar: probe, length: probe.archiveSize) { sent in progress.update(sent, probe.archiveSize) }
                }
                progress.finish("pushed \(plural(v.files, "file")), \(formatBytes(v.bytes)) in \(String(format: "%.1f", progress.line.elapsed))s")
                print(v.root)
            }
        }
    }
}

/// The client subcommands of `cce4 plane` (PlaneCommands.swift lists them next to `serve`).
enum PlaneClientCommands {
    static let all: [any ParsableCommand.Type] = [Login.self, Approve.self, Versions.self, Rent.self, EndRental.self, RentalStatus.self]

    struct Login: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Sign in with your wallet (EIP-4361) and print the bearer token.",
            discussion: "The token goes to standard output, for scripts (Authorization: Bearer TOKEN); its address and expiry to standard error.")

        @OptionGroup var plane: PlaneOptions

        func run() throws {
            try guarded {
                let key = try plane.key()
                let c = try plane.client()
                let s = try planeCall { try c.signIn(wallet: key, expectedDomain: plane.siweDomain) }
                FileHandle.standardError.write(Data("signed in as \(s.address) until \(s.expiresAt)\n".utf8))
                print(s.token)
            }
        }
    }

    struct Approve: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Approve the plane as your operator on the ledger (EIP-712 signature).",
            discussion: """
            The plane then registers datasets and versions and grants rentals in your name. The \
            request's types are checked against the ledger's OperatorApproval; the owner must be \
            your wallet. Pass --operator to also require the plane's address.
            """)

        @OptionGroup var plane: PlaneOptions

        @Option(name: .customLong("operator"), help: ArgumentHelp("Refuse unless the plane's operator address is this one.", valueName: "address"))
        var expectedOperator: String?

        func run() throws {
            try guarded {
                let want = try expectedOperator.map { a -> Address in
                    do { return try Address(a) } catch { throw Failure(description: "--operator: \(error)", exitCode: Failure.usage) }
                }
                let key = try plane.key()
                let c = try plane.signedIn(key)
                let r = try planeCall { try c.approveOperator(wallet: key, expectedOperator: want) }
                print("approved \(r.operator) as operator for \(r.owner)" + (r.expires == 0 ? " (revoked)" : " until \(r.expires)") + " (nonce \(r.nonce))")
            }
        }
    }

    struct Rent: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Grant a rental of a dataset you own to USER through the plane (ERC-4907 setUser on the ledger); print the rental id.",
            discussion: "The plane records it as your approved operator (`cce4 plane approve` once first).")
        @OptionGroup var plane: PlaneOptions
        @Option(help: ArgumentHelp("The dataset id.", valueName: "id")) var dataset: String
        @Option(help: ArgumentHelp("The consumer's address.", valueName: "address")) var user: String
        @Option(help: "End of the rental (exclusive): RFC 3339 or Unix seconds.") var until: String?
        @Option(name: .customLong("for"), help: "Length of the rental from now: e.g. 3600s, 90m, 12h, 30d.") var duration: String?

        func run() throws {
            try guarded {
                let expires = try endTime(until: until, duration: duration)
                let u: Address
                do { u = try Address(user) } catch { throw Failure(description: "--user: \(error)", exitCode: Failure.usage) }
                let c = try plane.signedIn(try plane.key())
                let r = try planeCall { try c.createRental(id: dataset, user: u, expires: Int64(expires)) }
                print(r.rentalId.value)
                FileHandle.standardError.write(Data("rental \(r.rentalId.value): \(r.user) may use \(dataset) until \(formatTime(UInt64(r.expires)))\n".utf8))
            }
        }
    }

    struct EndRental: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "end-rental", abstract: "End a rental of a dataset you own early, through the plane.")
        @OptionGroup var plane: PlaneOptions
        @Option(help: ArgumentHelp("The dataset id.", valueName: "id")) var dataset: String
        @Option(help: ArgumentHelp("The rental id (`cce4 plane rent` printed it).", valueName: "id")) var rental: UInt64
        func run() throws {
            try guarded {
                let c = try plane.signedIn(try plane.key())
                try planeCall { try c.endRental(id: dataset, rentalId: String(rental)) }
                print("rental \(rental) of \(dataset) ended")
            }
        }
    }

    struct RentalStatus: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "rental", abstract: "Whether USER holds an active rental of a dataset (exit 0 yes, 1 no). No sign-in needed.")
        @OptionGroup var plane: PlaneOptions
        @Option(help: ArgumentHelp("The dataset id.", valueName: "id")) var dataset: String
        @Option(help: ArgumentHelp("The address to ask about.", valueName: "address")) var user: String
        func run() throws {
            try guarded {
                let u: Address
                do { u = try Address(user) } catch { throw Failure(description: "--user: \(error)", exitCode: Failure.usage) }
                let c = try plane.client()
                let s = try planeCall { try c.rental(id: dataset, user: u) }
                if s.active {
                    print("active: rental \(s.rentalId.map { "\($0.value)" } ?? "?") until \(s.expires.map { formatTime(UInt64($0)) } ?? "?")")
                } else {
                    print("no active rental")
                    throw ExitCode(1)
                }
            }
        }
    }

    struct Versions: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List a dataset's versions on the plane: root hash, files, bytes, creation time.")

        @OptionGroup var plane: PlaneOptions

        @Option(help: ArgumentHelp("The dataset id.", valueName: "id"))
        var dataset: String

        func run() throws {
            try guarded {
                let c = try plane.client()
                for v in try planeCall({ try c.versions(id: dataset) }) {
                    print("\(v.root)  \(v.files) files  \(v.bytes) bytes" + (v.createdAt.map { "  \($0)" } ?? ""))
                }
            }
        }
    }
}
