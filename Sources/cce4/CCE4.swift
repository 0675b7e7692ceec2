// cce4: the operator's and consumer's command-line tool.
import ArgumentParser
import Dataset
import Envelope
import Foundation
import Logging
import ObjectStore
#if canImport(Glibc)
import Glibc
#endif

@main
struct CCE4: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cce4",
        abstract: "cce4long: encrypted datasets for confidential research on sensitive longevity data.",
        discussion: """
        Exit status: 0 success; 64 bad usage; 65 integrity failure (tampered, truncated, swapped \
        or rolled-back objects, or the wrong key); 66 missing input (store, object, path, key \
        file); 73 cannot create output; 74 I/O error; 77 permission problem (key file mode, \
        store permissions).
        """,
        version: "0.1.0",
        subcommands: [KeyCommand.self, DatasetCommand.self]
    )
}

// MARK: - Errors and exit codes

/// A failure the CLI reports as one actionable line and a documented exit status.
struct Failure: Error, CustomStringConvertible {
    let description: String
    let exitCode: Int32
    static let usage: Int32 = 64, dataError: Int32 = 65, noInput: Int32 = 66, cantCreate: Int32 = 73, ioError: Int32 = 74, noPermission: Int32 = 77

    static func from(_ error: any Error) -> Failure {
        switch error {
        case let f as Failure: return f
        case let e as KeyFileError: return Failure(description: e.description, exitCode: e.exitCode)
        case let e as DatasetError:
            switch e {
            case .integrity: return Failure(description: "\(e). The object was modified, truncated, swapped or rolled back, or the key is not this dataset's key.", exitCode: dataError)
            case .store(let s): return from(s)
            case .noSuchPath: return Failure(description: "\(e)", exitCode: noInput)
            case .wrongKind, .invalidArgument: return Failure(description: "\(e)", exitCode: usage)
            case .source: return Failure(description: "\(e)", exitCode: noInput)
            }
        case let e as ObjectStoreError:
            switch e.code {
            case .notFound: return Failure(description: "\(e). Check --store, --dataset and --root.", exitCode: noInput)
            case .permissionDenied: return Failure(description: "\(e)", exitCode: noPermission)
            case .noSpace: return Failure(description: "\(e). Free space in the store and run again; nothing was left half-written.", exitCode: ioError)
            case .invalidURL, .invalidKey: return Failure(description: "\(e)", exitCode: usage)
            default: return Failure(description: "\(e)", exitCode: ioError)
            }
        case let e as EnvelopeError:
            return Failure(description: "\(e)", exitCode: e.isIntegrityFailure ? dataError : usage)
        default:
            return Failure(description: "\(error)", exitCode: ioError)
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

// MARK: - Key files

extension KeyFileError {
    var exitCode: Int32 {
        switch kind {
        case .missing, .unreadable: return Failure.noInput
        case .permissions: return Failure.noPermission
        case .malformed: return Failure.usage
        }
    }
}

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
