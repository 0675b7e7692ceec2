// Intel PCS responses: {"tcbInfo":{…},"signature":"hex"} and {"enclaveIdentity":{…},"signature":"hex"}.
// The signature covers the exact bytes of the inner object as they appear in the response, so
// the verifier takes that raw span (never a re-serialisation) and parses the values from the
// same span it verified.
import Envelope
import Foundation

struct SignedJSON {
    /// The raw bytes of the signed value.
    let body: [UInt8]
    /// The 64-byte r ‖ s signature.
    let signature: [UInt8]
    let what: String

    /// The signed value, parsed from the very bytes the signature covers. Call after verifying.
    func object() throws(AttestationError) -> [String: Any] {
        guard let o = try? JSONSerialization.jsonObject(with: Data(body)) as? [String: Any] else { throw .collateral("\(what) is not a JSON object") }
        return o
    }

    init(_ bytes: [UInt8], key: String, what: String) throws(AttestationError) {
        guard let spans = TopLevelSpans(bytes) else { throw .collateral("\(what) is not a JSON object") }
        guard let b = spans.values[key] else { throw .collateral("\(what) has no \"\(key)\"") }
        guard let s = spans.values["signature"] else { throw .collateral("\(what) has no \"signature\"") }
        body = Array(bytes[b])
        self.what = what
        guard let text = try? JSONSerialization.jsonObject(with: Data(bytes[s]), options: .fragmentsAllowed) as? String,
              let sig = Hex.decode(text), sig.count == 64 else { throw .collateral("\(what): signature is not 64 bytes of hex") }
        signature = sig
    }
}

/// The raw byte ranges of a JSON object's top-level values, keyed by name. Nil if the text is
/// not one object or a key repeats (a repeated key could show a verifier one value and a
/// parser another).
struct TopLevelSpans {
    var values: [String: Range<Int>] = [:]
    private let b: [UInt8]
    private var i = 0

    init?(_ bytes: [UInt8]) {
        b = bytes
        skipSpace()
        guard peek == UInt8(ascii: "{") else { return nil }
        i += 1
        skipSpace()
        if peek == UInt8(ascii: "}") { return }
        while true {
            skipSpace()
            guard let k = string(), let keyText = String(bytes: b[k], encoding: .utf8) else { return nil }
            skipSpace()
            guard peek == UInt8(ascii: ":") else { return nil }
            i += 1
            skipSpace()
            let start = i
            guard value() else { return nil }
            let name = String(keyText.dropFirst().dropLast())
            guard values[name] == nil else { return nil }
            values[name] = start..<i
            skipSpace()
            if peek == UInt8(ascii: ",") { i += 1; continue }
            if peek == UInt8(ascii: "}") { i += 1; break }
            return nil
        }
        skipSpace()
        guard i == b.count else { return nil }
    }

    private var peek: UInt8? { i < b.count ? b[i] : nil }
    private mutating func skipSpace() { while let c = peek, c == 0x20 || c == 0x0a || c == 0x0d || c == 0x09 { i += 1 } }

    /// A string token including its quotes.
    private mutating func string() -> Range<Int>? {
        guard peek == UInt8(ascii: "\"") else { return nil }
        let start = i
        i += 1
        while let c = peek {
            i += 1
            if c == UInt8(ascii: "\\") { guard peek != nil else { return nil }; i += 1 }
            else if c == UInt8(ascii: "\"") { return start..<i }
        }
        return nil
    }

    /// Skips one value: a string, or a balanced object/array, or a scalar.
    private mutating func value() -> Bool {
        guard let c = peek else { return false }
        if c == UInt8(ascii: "\"") { return string() != nil }
        if c == UInt8(ascii: "{") || c == UInt8(ascii: "[") {
            var depth = 0
            while let d = peek {
                if d == UInt8(ascii: "\"") { guard string() != nil else { return false }; continue }
                if d == UInt8(ascii: "{") || d == UInt8(ascii: "[") { depth += 1 }
                if d == UInt8(ascii: "}") || d == UInt8(ascii: "]") { depth -= 1 }
                i += 1
                if depth == 0 { return true }
            }
            return false
        }
        let start = i
        while let d = peek, d != UInt8(ascii: ","), d != UInt8(ascii: "}"), d != 0x20, d != 0x0a, d != 0x0d, d != 0x09 { i += 1 }
        return i > start
    }
}

/// Intel's timestamps ("2023-06-18T08:42:58Z").
func parseISO8601(_ s: Any?) -> Date? {
    guard let s = s as? String else { return nil }
    let f = ISO8601DateFormatter()
    f.formatOptions = [.withInternetDateTime]
    if let d = f.date(from: s) { return d }
    f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
    return f.date(from: s)
}
