// cce4 job: Job Credentials, the consumer's signed statement that lets an attested CVM obtain
// the keys of rented datasets (docs/key-release.md §Job Credential).
import ArgumentParser
import Envelope
import Foundation
import KeyRelease
import Wallet

struct JobCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "job",
        abstract: "Make and check Job Credentials for attested key release.",
        subcommands: [Credential.self, VerifyCredential.self])

    struct Credential: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "credential",
            abstract: "Sign a Job Credential with your wallet (EIP-191) and write it as JSON.",
            discussion: """
            The credential names the job, the dataset versions it may read, the TEE measurement \
            of the job image, and an expiry. cce4fs presents it to the Privacy Plane (-o \
            credential=FILE); the plane releases the keys only to evidence with that measurement, \
            bound to the credential, and only while the signer rents every dataset. The signed \
            text is shown by `cce4 job verify-credential`. Exit status: 0 written; 64 bad \
            arguments; 65 wrong password; 66 missing keystore; 73 cannot write the output.
            """)

        @OptionGroup var signer: SignerOptions

        @Option(help: ArgumentHelp("The job's id (1-128 printable characters, no spaces).", valueName: "id"))
        var job: String

        @Option(name: .customLong("dataset"), help: ArgumentHelp("A dataset version as ID@ROOT (ROOT: the 64-hex root hash); repeatable.", valueName: "id@root"))
        var datasets: [String] = []

        @Option(help: ArgumentHelp("The job image's TEE measurement (TDX MRTD / SNP MEASUREMENT, or the simulated one): 96 hex digits.", valueName: "hex"))
        var measurement: String

        @Option(help: ArgumentHelp("The job image's digest, e.g. sha256:…, recorded for humans and the result manifest.", valueName: "digest"))
        var image: String

        @Option(name: .customLong("valid-for"), help: ArgumentHelp("How long the credential is valid, in seconds from now.", valueName: "seconds"))
        var validFor: UInt64 = 86_400

        @Option(name: .shortAndLong, help: ArgumentHelp("Where to write the credential (default: standard output).", valueName: "file"))
        var output: String?

        func run() throws {
            try guarded {
                guard !datasets.isEmpty else { throw Failure(description: "name at least one --dataset ID@ROOT", exitCode: Failure.usage) }
                var versions: [DatasetVersion] = []
                for d in datasets {
                    let parts = d.split(separator: "@", omittingEmptySubsequences: false)
                    guard parts.count == 2 else { throw Failure(description: "--dataset \(d): expected ID@ROOT", exitCode: Failure.usage) }
                    let root = try parseHex(String(parts[1]), bytes: 32, option: "--dataset")
                    do { versions.append(try DatasetVersion(id: String(parts[0]), root: try SHA256Digest(bytes: root))) } catch {
                        throw Failure(description: "--dataset \(d): \(error)", exitCode: Failure.usage)
                    }
                }
                let m = try parseHex(measurement, bytes: 48, option: "--measurement")
                guard validFor > 0 else { throw Failure(description: "--valid-for must be positive", exitCode: Failure.usage) }
                let key = try signer.load()
                let credential: JobCredential
                do {
                    credential = try JobCredential.make(job: job, datasets: versions, measurement: m, image: image,
                                                        expires: UInt64(Date().timeIntervalSince1970) + validFor, key: key)
                } catch { throw Failure(description: "\(error)", exitCode: Failure.usage) }
                let enc = JSONEncoder()
                enc.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
                let json = try enc.encode(credential) + Data("\n".utf8)
                if let output {
                    guard FileManager.default.createFile(atPath: output, contents: json) else {
                        throw Failure(description: "cannot write \(output)", exitCode: Failure.cantCreate)
                    }
                } else {
                    FileHandle.standardOutput.write(json)
                }
            }
        }
    }

    struct VerifyCredential: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "verify-credential",
            abstract: "Check a Job Credential's signature and expiry, and print the signed text.",
            discussion: "Exit status: 0 valid; 65 bad signature or expired; 66 missing file; 64 not a credential.")

        @Argument(help: ArgumentHelp("The credential JSON file.", valueName: "file"))
        var file: String

        func run() throws {
            try guarded {
                guard let data = FileManager.default.contents(atPath: file) else { throw Failure(description: "cannot read \(file)", exitCode: Failure.noInput) }
                let c: JobCredential
                do { c = try JSONDecoder().decode(JobCredential.self, from: data) } catch {
                    throw Failure(description: "\(file) is not a Job Credential: \(error)", exitCode: Failure.usage)
                }
                do {
                    let text = try c.message()
                    let who = try c.verify(now: UInt64(Date().timeIntervalSince1970))
                    print(text)
                    print("---\nsigned by \(who); credential hash \(Hex.encode(try c.hash()))")
                } catch let e as KeyReleaseError where e.code == .malformed {
                    throw Failure(description: e.reason, exitCode: Failure.usage)
                } catch let e as KeyReleaseError {
                    throw Failure(description: e.reason, exitCode: Failure.dataError)
                }
            }
        }
    }
}
