// Evidence providers: how a guest obtains evidence binding 64 bytes of its choosing.
import Envelope
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Evidence as a provider returns it.
public struct Evidence: Sendable, Equatable {
    /// configfs-tsm's `provider` ("tdx_guest", "sev_guest"), or "simulated".
    public let provider: String
    /// The report or quote.
    public let outblob: [UInt8]
    /// Auxiliary data (SEV-SNP: the certificate table the host supplied, if any).
    public let auxblob: [UInt8]

    public init(provider: String, outblob: [UInt8], auxblob: [UInt8]) {
        self.provider = provider; self.outblob = outblob; self.auxblob = auxblob
    }
}

/// Produces evidence whose report data is the caller's 64 bytes.
public protocol EvidenceProvider: Sendable {
    func evidence(reportData: [UInt8]) throws(AttestationError) -> Evidence
}

/// Linux configfs-tsm (Documentation/ABI/testing/configfs-tsm, kernel 6.7+): make a fresh
/// report entry, write the 64-byte inblob, read outblob and auxblob, and check `provider`
/// and that `generation` did not move while reading (another writer would have changed the
/// inblob under us).
public struct ConfigfsTSMProvider: EvidenceProvider {
    /// A step where the kernel acts on the entry. Tests pass `emulator` to play the kernel's
    /// part on a plain directory; production passes nil.
    public enum Event: Sendable { case created, wroteInblob, readOutblob, removing }

    public let root: String
    /// The provider the caller expects ("tdx_guest", "sev_guest"); nil accepts any.
    public let expectedProvider: String?
    let emulator: (@Sendable (Event, String) -> Void)?

    public init(root: String = "/sys/kernel/config/tsm/report", expectedProvider: String? = nil,
                emulator: (@Sendable (Event, String) -> Void)? = nil) {
        self.root = root
        self.expectedProvider = expectedProvider
        self.emulator = emulator
    }

    public func evidence(reportData: [UInt8]) throws(AttestationError) -> Evidence {
        guard reportData.count == 64 else { throw .invalidArgument("report data is exactly 64 bytes, not \(reportData.count)") }
        // A fresh entry: a random name, and mkdir fails rather than reuse an existing one.
        var name = [UInt8](repeating: 0, count: 8)
        for i in name.indices { name[i] = UInt8.random(in: 0...255) }
        let entry = root + "/cce4-" + Hex.encode(name)
        guard mkdir(entry, 0o700) == 0 else { throw .provider("cannot create \(entry): \(String(cString: strerror(errno)))") }
        emulator?(.created, entry)
        defer {
            emulator?(.removing, entry)
            rmdir(entry)
        }
        try write(entry + "/inblob", reportData)
        emulator?(.wroteInblob, entry)
        let before = try generation(entry)
        // A fresh entry has seen exactly one write, ours: anything else means another writer
        // got in between, and the outblob could bind its data instead of ours.
        guard before == 1 else { throw .provider("generation is \(before) after our one write to a fresh entry: another writer raced us") }
        let provider = String(decoding: try read(entry + "/provider"), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        if let expectedProvider, provider != expectedProvider {
            throw .provider("configfs-tsm provider is \(provider), expected \(expectedProvider)")
        }
        let out = try read(entry + "/outblob")
        emulator?(.readOutblob, entry)
        let aux = FileManager.default.fileExists(atPath: entry + "/auxblob") ? try read(entry + "/auxblob") : []
        let after = try generation(entry)
        guard before == after else { throw .provider("generation moved from \(before) to \(after) while reading: another writer raced us") }
        guard !out.isEmpty else { throw .provider("empty outblob: the TSM produced no evidence") }
        return Evidence(provider: provider, outblob: out, auxblob: aux)
    }

    private func generation(_ entry: String) throws(AttestationError) -> UInt64 {
        let text = String(decoding: try read(entry + "/generation"), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        guard let g = UInt64(text) else { throw .provider("unreadable generation \"\(text)\"") }
        return g
    }

    /// One write(2) of exactly the bytes: configfs binary attributes take the whole blob at once.
    private func write(_ path: String, _ bytes: [UInt8]) throws(AttestationError) {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw .provider("cannot open \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress!, $0.count) }
        guard n == bytes.count else { throw .provider("short write to \(path)") }
    }

    private func read(_ path: String) throws(AttestationError) -> [UInt8] {
        guard let d = FileManager.default.contents(atPath: path) else { throw .provider("cannot read \(path)") }
        return Array(d)
    }
}
