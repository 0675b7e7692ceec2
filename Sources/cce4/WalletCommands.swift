// cce4 wallet: Ethereum identities (keystore v3 files) for signing ledger entries and
// sign-in messages.
import ArgumentParser
import Dataset
import Envelope
import Foundation
import Ledger
import Wallet
#if canImport(Glibc)
import Glibc
#endif

extension ExitStatus {
    /// Wallet and ledger errors: 65 tampered/invalid data, 77 refused by the rules or a wrong
    /// password, 64 bad arguments, 66 missing files, 74 I/O.
    static func ofIdentity(_ error: any Error) -> Int32? {
        switch error {
        case let e as WalletError:
            switch e {
            case .wrongPassword: return noPermission
            case .invalidSignature, .highS, .badChecksum, .keystore: return dataError
            case .malformedAddress, .invalidPrivateKey: return usage
            case .crypto: return ioError
            }
        case let e as LedgerError:
            switch e {
            case .refused: return noPermission
            case .invalidArgument: return usage
            case .corrupt, .proof: return dataError
            case .io(let why): return why.hasPrefix("no ledger") ? noInput : ioError
            }
        case is SIWEError: return dataError
        default: return nil
        }
    }
}

/// Where a command gets its signing key: a keystore file and its password.
struct SignerOptions: ParsableArguments {
    @Option(help: ArgumentHelp("The signer's keystore v3 file (make one with `cce4 wallet new`). Default: $CCE4_KEYSTORE.", valueName: "file"))
    var keystore: String?

    @Option(help: ArgumentHelp("A file whose first line is the keystore's password. Default: $CCE4_WALLET_PASSWORD, else a prompt on the terminal.", valueName: "file"))
    var passwordFile: String?

    var keystorePath: String {
        get throws {
            try optionOrEnvironment(keystore, "CCE4_KEYSTORE",
                                    missing: "no signer: pass --keystore FILE (or set CCE4_KEYSTORE); make one with `cce4 wallet new --keystore FILE`")
        }
    }

    /// The password bytes (the caller wipes them).
    func password(confirm: Bool = false) throws -> [UInt8] {
        if let f = passwordFile {
            guard var d = FileManager.default.contents(atPath: f) else {
                throw Failure(description: "cannot read password file \(f)", exitCode: Failure.noInput)
            }
            var b = Array(d)
            d.withUnsafeMutableBytes { secureWipe($0) }
            // Cut at the first line end, wiping what is cut (removal keeps the bytes in capacity).
            let end = b.firstIndex(where: { $0 == 10 || $0 == 13 }) ?? b.count
            for i in end..<b.count { b[i] = 0 }
            b.removeSubrange(end...)
            return b
        }
        // (The environment's copy cannot be wiped: prefer --password-file where it matters.)
        if let p = ProcessInfo.processInfo.environment["CCE4_WALLET_PASSWORD"] { return Array(p.utf8) }
        guard isatty(0) == 1 else {
            throw Failure(description: "no password: pass --password-file FILE, set CCE4_WALLET_PASSWORD, or run on a terminal", exitCode: Failure.usage)
        }
        let p = try prompt("Keystore password: ")
        if confirm {
            var again = try prompt("Repeat the password: ")
            defer { secureWipe(&again) }
            guard again == p else { throw Failure(description: "the passwords differ; nothing was written", exitCode: Failure.usage) }
        }
        return p
    }

    /// getpass(3), copied out and its static buffer wiped.
    private func prompt(_ text: String) throws -> [UInt8] {
        guard let raw = getpass(text) else { throw Failure(description: "cannot read a password from the terminal", exitCode: Failure.usage) }
        let n = strlen(raw)
        let bytes = Array(UnsafeBufferPointer(start: UnsafeRawPointer(raw).assumingMemoryBound(to: UInt8.self), count: n))
        memset(raw, 0, n)
        return bytes
    }

    func load() throws -> PrivateKey {
        let path = try keystorePath
        guard let data = FileManager.default.contents(atPath: path) else {
            throw Failure(description: "cannot read keystore \(path) (missing or unreadable)", exitCode: Failure.noInput)
        }
        var pw = try password()
        defer { secureWipe(&pw) }
        return try Keystore.decrypt(data, password: pw)
    }
}

struct WalletCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "wallet",
        abstract: "Ethereum wallet identities: make keys, show addresses, sign and verify messages.",
        subcommands: [New.self, AddressCmd.self, Sign.self, Verify.self, SIWEVerify.self])

    struct New: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Make a new secp256k1 key in a keystore v3 file (mode 0600) and print its address.",
            discussion: "The file opens in geth, MetaMask (import JSON), eth-account and `cce4`. Keep the password elsewhere.")
        @OptionGroup var signer: SignerOptions
        @Option(help: "Key derivation: standard (scrypt n=2^18, ~1 s, what wallets use) or light (scrypt n=2^12, for tests).")
        var kdf: String = "standard"

        func run() throws {
            try guarded {
                let path = try signer.keystorePath
                let kdf: Keystore.KDF
                switch self.kdf {
                case "standard": kdf = .standard
                case "light": kdf = .light
                default: throw Failure(description: "--kdf must be standard or light", exitCode: Failure.usage)
                }
                var pw = try signer.password(confirm: true)
                defer { secureWipe(&pw) }
                let key = try PrivateKey.generate()
                let json = try Keystore.encrypt(key, password: pw, kdf: kdf)
                try writeNew(path, json + Data("\n".utf8), mode: 0o600)
                print(key.address.checksummed)
            }
        }
    }

    struct AddressCmd: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "address", abstract: "Print a keystore's address (no password needed).")
        @OptionGroup var signer: SignerOptions
        func run() throws {
            try guarded {
                let path = try signer.keystorePath
                guard let data = FileManager.default.contents(atPath: path) else {
                    throw Failure(description: "cannot read keystore \(path)", exitCode: Failure.noInput)
                }
                guard let a = try Keystore.address(of: data) else {
                    // No address field: the password is needed to derive it.
                    print(try signer.load().address.checksummed)
                    return
                }
                print(a.checksummed)
            }
        }
    }

    struct Sign: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Sign a message with EIP-191 personal_sign and print the 65-byte signature as 0x hex.")
        @OptionGroup var signer: SignerOptions
        @Argument(help: "The message text (or use --file / --hex).") var message: String?
        @Option(help: ArgumentHelp("Sign this file's bytes.", valueName: "file")) var file: String?
        @Option(help: ArgumentHelp("Sign these bytes, given as hex.", valueName: "hex")) var hex: String?

        func run() throws {
            try guarded {
                let bytes = try messageBytes(message, file: file, hex: hex)
                print(try signer.load().signPersonal(bytes).hex)
            }
        }
    }

    struct Verify: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check a personal_sign signature: exit 0 if ADDRESS signed the message, 65 if not.")
        @Option(help: "The expected signer.") var address: String
        @Option(help: "The 65-byte signature, 0x hex.") var signature: String
        @Argument(help: "The message text (or use --file / --hex).") var message: String?
        @Option(help: ArgumentHelp("The signed file.", valueName: "file")) var file: String?
        @Option(help: ArgumentHelp("The signed bytes as hex.", valueName: "hex")) var hex: String?

        func run() throws {
            try guarded {
                let expected = try Address(address)
                let signer = try PersonalMessage.signer(of: try messageBytes(message, file: file, hex: hex), signature: Signature(hex: signature))
                guard signer == expected else {
                    throw Failure(description: "signature does not verify: it was made by \(signer), not \(expected)", exitCode: Failure.dataError)
                }
                print("valid: signed by \(signer)")
            }
        }
    }

    struct SIWEVerify: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "siwe-verify",
            abstract: "Check an EIP-4361 Sign-In with Ethereum message and its signature; print the signer.")
        @Option(help: ArgumentHelp("The message text, exactly as signed.", valueName: "file")) var messageFile: String
        @Option(help: "The 65-byte signature, 0x hex.") var signature: String
        @Option(help: "Refuse unless the message is for this domain.") var domain: String?
        @Option(help: "Refuse unless the message carries this nonce.") var nonce: String?
        @Option(help: "Check validity at this time (RFC 3339 or Unix seconds; default now).") var at: String?

        func run() throws {
            try guarded {
                guard let d = FileManager.default.contents(atPath: messageFile) else {
                    throw Failure(description: "cannot read \(messageFile)", exitCode: Failure.noInput)
                }
                let m = try SIWEMessage(parsing: String(decoding: d, as: UTF8.self))
                let t = try at.map(parseTime) ?? UInt64(Date().timeIntervalSince1970)
                try m.verify(signature: Signature(hex: signature), at: SIWETime(unixSeconds: Int64(clamping: t)).nanoseconds, domain: domain, nonce: nonce)
                print("valid: \(m.address) signs in to \(m.domain) (chain \(m.chainID), nonce \(m.nonce))")
            }
        }
    }
}

/// Hex from the command line (an optional 0x prefix; `bytes` long when given); a usage error
/// naming the option otherwise. The one hex parser of the cce4 commands.
func parseHex(_ text: String, bytes count: Int?, option: String) throws -> [UInt8] {
    let digits = text.hasPrefix("0x") || text.hasPrefix("0X") ? String(text.dropFirst(2)) : text
    guard let b = Hex.decode(digits), count == nil || b.count == count else {
        let size = count.map { "\(2 * $0) hex digits (\($0) bytes)" } ?? "hex digits"
        throw Failure(description: "\(option) must be \(size)", exitCode: Failure.usage)
    }
    return b
}

/// An option's value, else the environment variable's, else a usage error saying `missing`.
func optionOrEnvironment(_ value: String?, _ variable: String, missing: String) throws -> String {
    guard let v = value ?? ProcessInfo.processInfo.environment[variable] else {
        throw Failure(description: missing, exitCode: Failure.usage)
    }
    return v
}

func messageBytes(_ text: String?, file: String?, hex: String?) throws -> [UInt8] {
    switch (text, file, hex) {
    case (let t?, nil, nil): return Array(t.utf8)
    case (nil, let f?, nil):
        guard let d = FileManager.default.contents(atPath: f) else { throw Failure(description: "cannot read \(f)", exitCode: Failure.noInput) }
        return Array(d)
    case (nil, nil, let h?):
        return try parseHex(h, bytes: nil, option: "--hex")
    default: throw Failure(description: "give the message once: as an argument, --file or --hex", exitCode: Failure.usage)
    }
}

/// RFC 3339 or Unix seconds.
func parseTime(_ s: String) throws -> UInt64 {
    if let v = UInt64(s) { return v }
    guard let t = try? SIWETime(s), t.nanoseconds >= 0 else {
        throw Failure(description: "'\(s)' is not a time: use RFC 3339 (2026-12-01T00:00:00Z) or Unix seconds", exitCode: Failure.usage)
    }
    return UInt64(t.nanoseconds / 1_000_000_000)
}

/// Writes a new file (never replaces one) and syncs it.
func writeNew(_ path: String, _ data: Data, mode: mode_t) throws {
    let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode)
    guard fd >= 0 else {
        let e = errno
        throw Failure(description: e == EEXIST ? "\(path) already exists; not replacing it" : "cannot create \(path): \(String(cString: strerror(e)))", exitCode: Failure.cantCreate)
    }
    defer { close(fd) }
    let n = data.withUnsafeBytes { write(fd, $0.baseAddress!, $0.count) }
    guard n == data.count, fsync(fd) == 0 else { throw Failure(description: "cannot write \(path): \(String(cString: strerror(errno)))", exitCode: Failure.ioError) }
}
