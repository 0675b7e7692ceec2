// cce4: the operator's and consumer's command-line tool.
import ArgumentParser
import Dataset
import Envelope
import Foundation
import Ledger
import Logging
import ObjectStore
import Wallet
#if canImport(Glibc)
import Glibc
#endif

@main
struct CCE4: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cce4",
        abstract: "cce4long: encrypted datasets for confidential research on sensitive longevity data.",
        discussion: """
        Exit status: 0 success; 1 attest verify: verified but refused by policy (ledger status: \
        no active rental); 64 bad usage; \
        65 integrity failure (tampered, truncated, swapped \
        or rolled-back objects, or the wrong key; evidence that does not verify); 66 missing input \
        (store, object, path, key file, evidence, collateral); 73 cannot create output; 74 I/O \
        error; 77 permission problem (key file mode, store permissions).
        """,
        version: "0.1.0",
        subcommands: [KeyCommand.self, DatasetCommand.self, WalletCommand.self, LedgerCommand.self, AttestCommand.self, PlaneCommand.self, JobCommand.self]
    )
}

// MARK: - Errors and exit codes

/// A failure the CLI reports as one actionable line and a documented exit status.
struct Failure: Error, CustomStringConvertible {
    let description: String
    let exitCode: Int32
    static let usage = ExitStatus.usage, dataError = ExitStatus.dataError, noInput = ExitStatus.noInput
    static let cantCreate = ExitStatus.cantCreate, ioError = ExitStatus.ioError, noPermission = ExitStatus.noPermission

    /// The library error, what to do next, and its status (ExitStatus.of).
    static func from(_ error: any Error) -> Failure {
        if let f = error as? Failure { return f }
        return Failure(description: "\(error)" + hint(error), exitCode: ExitStatus.ofIdentity(error) ?? ExitStatus.of(error))
    }

    static func hint(_ error: any Error) -> String {
        switch error {
        case DatasetError.integrity: return ". The object was modified, truncated, swapped or rolled back, or the key is not this dataset's key."
        case DatasetError.store(let e): return hint(e)
        case LedgerError.corrupt: return ". The ledger file was altered or damaged: keep it for inspection and restore a copy that passes `cce4 ledger verify --checkpoint CP --signer ADDR` against your last published checkpoint."
        case WalletError.keystore: return ". Check that FILE is a keystore v3 JSON (as written by `cce4 wallet new`, geth or MetaMask)."
        case let e as ObjectStoreError where e.code == .notFound: return ". Check --store, --dataset and --root."
        case let e as ObjectStoreError where e.code == .noSpace: return ". Free space in the store and run again; nothing was left half-written."
        default: return ""
        }
    }
}

/// Runs a command body; prints one line on failure and exits with its status.
func guarded(_ body: () throws -> Void) throws {
    do {
        try body()
    } catch let e as ExitCode {
        throw e
    } catch {
        let f = Failure.from(error)
        FileHandle.standardError.write(Data("cce4: error: \(f.description)\n".utf8))
        throw ExitCode(f.exitCode)
    }
}

func bootstrapLogging(_ level: Logger.Level) {
    LoggingSystem.bootstrap { label in
        var h = StreamLogHandler.standardError(label: label)
        h.logLevel = level
        return h
    }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}

struct KeyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "key", abstract: "Make and inspect dataset keys.", subcommands: [Generate.self])

    struct Generate: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Generate a random 256-bit dataset key into a local file (development only).",
            discussion: """
            The key is written to a new file with mode 0600. Anyone who can read the file can \
            decrypt the dataset: production keys are released by the Privacy Plane to attested \
            confidential VMs instead, which is why the option says 'insecure'.
            """)

        @Option(name: .customLong("insecure-key-file"), help: ArgumentHelp("Where to write the key.", valueName: "path"))
        var path: String

        @Flag(help: "Replace an existing key file (the old key is lost, and with it the datasets it encrypted).")
        var force = false

        func run() throws {
            try guarded {
                let key = try SecureBytes.random(count: InsecureKeyFile.keyLength)
                var bytes = InsecureKeyFile.encode(key)
                defer { secureWipe(&bytes) }
                var flags = O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW
                flags |= force ? O_TRUNC : O_EXCL
                let fd = open(path, flags, 0o600)
                guard fd >= 0 else {
                    let e = errno
                    if e == EEXIST { throw Failure(description: "key file \(path) already exists; pass --force to replace it (datasets encrypted with the old key become unreadable)", exitCode: Failure.cantCreate) }
                    throw Failure(description: "cannot create key file \(path): \(String(cString: strerror(e)))", exitCode: Failure.cantCreate)
                }
                defer { close(fd) }
                guard fchmod(fd, 0o600) == 0 else { throw Failure(description: "cannot set mode 0600 on \(path)", exitCode: Failure.cantCreate) }
                let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress!, $0.count) }
                guard n == bytes.count, fsync(fd) == 0 else { throw Failure(description: "cannot write key file \(path): \(String(cString: strerror(errno)))", exitCode: Failure.ioError) }
                if isatty(2) == 1 {
                    FileHandle.standardError.write(Data("cce4: wrote a new dataset key to \(path) (mode 0600). INSECURE: for development and tests only.\n".utf8))
                }
            }
        }
    }
}
