// Signed checkpoints: the C2SP tlog-checkpoint text (origin, tree size, base64 root hash)
// as a C2SP signed note whose signature is the signer's EIP-191 personal_sign over the
// note text. Signature type 0xff + "cce4long/eip191" (signed-note's "unassigned" type).
import Envelope
import Foundation
import Wallet

public struct Checkpoint: Hashable, Sendable {
    /// The log's identity, e.g. "cce4long.ledger/<32 hex digits of the log id>".
    public let origin: String
    public let size: UInt64
    public let root: [UInt8]

    public init(origin: String, size: UInt64, root: [UInt8]) { self.origin = origin; self.size = size; self.root = root }

    /// The checkpoint body: three lines, each ending in a newline.
    public var text: String { "\(origin)\n\(size)\n\(Data(root).base64EncodedString())\n" }

    static let signatureType: [UInt8] = [0xff] + Array("cce4long/eip191".utf8)

    /// The signed-note key name of an address.
    public static func keyName(_ a: Address) -> String { "cce4long.ledger/\(a.checksummed)" }

    /// Key ID = SHA-256(name || 0x0A || 0xff || "cce4long/eip191" || 20-byte address)[:4].
    static func keyID(_ a: Address) -> [UInt8] {
        Array(SHA256Digest.hash(Array(keyName(a).utf8) + [0x0a] + signatureType + a.bytes).bytes.prefix(4))
    }

    /// The signed note: text, a blank line, "— <name> base64(key ID || r || s || v)".
    public func signed(by key: PrivateKey) throws(WalletError) -> String {
        let sig = try key.signPersonal(Array(text.utf8))
        return text + "\n— \(Self.keyName(key.address)) \(Data(Self.keyID(key.address) + sig.bytes).base64EncodedString())\n"
    }

    /// Parses a signed checkpoint and verifies its signatures. Returns the checkpoint and the
    /// addresses whose signatures verified; refuses a note without one, and (when `trusted`
    /// is given) a note that the trusted address did not sign.
    public static func open(_ note: String, trusted: Address? = nil) throws(LedgerError) -> (Checkpoint, signers: [Address]) {
        guard note.utf8.count <= 64 * 1024 else { throw .proof("checkpoint larger than 64 KiB") }
        guard let sep = note.range(of: "\n\n") else { throw .proof("no blank line between the checkpoint and its signatures") }
        let text = String(note[..<note.index(after: sep.lowerBound)])
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).dropLast()
        guard lines.count >= 3 else { throw .proof("a checkpoint has an origin, a size and a root hash") }
        guard !lines[0].isEmpty, !note.utf8.contains(where: { $0 < 0x20 && $0 != 0x0a }) else { throw .proof("bad origin line or control characters") }
        let sizeText = String(lines[1])
        guard let size = UInt64(sizeText), String(size) == sizeText else { throw .proof("the size line is not a decimal number") }
        guard let rootData = Data(base64Encoded: String(lines[2])), rootData.count == 32 else { throw .proof("the root line is not 32 bytes of base64") }
        let cp = Checkpoint(origin: String(lines[0]), size: size, root: Array(rootData))
        var signers = [Address]()
        let sigLines = note[sep.upperBound...].split(separator: "\n", omittingEmptySubsequences: false)
        guard sigLines.last == "", sigLines.count >= 2 else { throw .proof("the signature lines must end with a newline") }
        for line in sigLines.dropLast() {
            let parts = line.split(separator: " ", omittingEmptySubsequences: false)
            guard parts.count == 3, parts[0] == "—" else { throw .proof("a signature line is \"— <name> <base64>\"") }
            guard let raw = Data(base64Encoded: String(parts[2])) else { throw .proof("a signature is not base64") }
            let name = String(parts[1])
            // Unknown key types and names are ignored, as signed-note requires.
            guard name.hasPrefix("cce4long.ledger/0x"), raw.count == 4 + 65 else { continue }
            guard let claimed = try? Address(String(name.dropFirst("cce4long.ledger/".count)), requireChecksum: true), Array(raw.prefix(4)) == keyID(claimed) else { continue }
            let signer: Address
            do {
                signer = try PersonalMessage.signer(of: Array(text.utf8), signature: Signature(bytes: Array(raw.dropFirst(4))))
            } catch { throw .proof("the signature of \(name) is invalid: \(error)") }
            guard signer == claimed else { throw .proof("the signature of \(name) was made by \(signer)") }
            signers.append(signer)
        }
        guard !signers.isEmpty else { throw .proof("no cce4long signature on the checkpoint") }
        if let trusted, !signers.contains(trusted) { throw .proof("not signed by \(trusted) (signed by \(signers.map(\.checksummed).joined(separator: ", ")))") }
        return (cp, signers)
    }
}
