// The few S3 XML responses cce4 reads: ListObjectsV2 results, multipart upload ids and
// error bodies. Untrusted bytes from the network: a small, bounded scanner (no entity
// expansion beyond the five predefined entities and numeric references, no DTDs), fuzzed in
// the tests.

enum S3XML {
    /// One object of a ListObjectsV2 page.
    struct Entry: Equatable {
        var key: String
        var size: Int64
        var etag: String
        var lastModified: String
    }

    struct ListPage: Equatable {
        var entries: [Entry]
        var isTruncated: Bool
    }

    /// The text of every top-level `<tag>…</tag>` element inside `xml` (not nested
    /// same-named tags; S3's responses have none).
    static func elements(_ xml: Substring, _ tag: String) -> [Substring] {
        var out = [Substring]()
        let open = "<" + tag + ">", close = "</" + tag + ">"
        var rest = xml[...]
        while let o = rest.range(of: open) {
            guard let c = rest[o.upperBound...].range(of: close) else { break }
            out.append(rest[o.upperBound..<c.lowerBound])
            rest = rest[c.upperBound...]
        }
        return out
    }

    static func first(_ xml: Substring, _ tag: String) -> String? {
        elements(xml, tag).first.map { unescape($0) }
    }

    /// Decodes &amp; &lt; &gt; &quot; &apos; and &#N; / &#xN; references; anything else is
    /// left as it is.
    static func unescape(_ s: Substring) -> String {
        guard s.contains("&") else { return String(s) }
        var out = ""
        var i = s.startIndex
        while i < s.endIndex {
            if s[i] == "&", let semi = s[i...].prefix(12).firstIndex(of: ";") {
                let name = s[s.index(after: i)..<semi]
                var rep: String?
                switch name {
                case "amp": rep = "&"
                case "lt": rep = "<"
                case "gt": rep = ">"
                case "quot": rep = "\""
                case "apos": rep = "'"
                default:
                    if name.hasPrefix("#x") || name.hasPrefix("#X"), let v = UInt32(name.dropFirst(2), radix: 16), let u = Unicode.Scalar(v) { rep = String(Character(u)) }
                    else if name.hasPrefix("#"), let v = UInt32(name.dropFirst()), let u = Unicode.Scalar(v) { rep = String(Character(u)) }
                }
                if let rep { out += rep; i = s.index(after: semi); continue }
            }
            out.append(s[i])
            i = s.index(after: i)
        }
        return out
    }

    /// Parses a ListObjectsV2 result; nil if it is not one.
    static func listPage(_ bytes: [UInt8]) -> ListPage? {
        let xml = String(decoding: bytes, as: UTF8.self)[...]
        guard xml.contains("<ListBucketResult") else { return nil }
        var entries = [Entry]()
        for c in elements(xml, "Contents") {
            guard let key = first(c, "Key"), let sizeText = first(c, "Size"), let size = Int64(sizeText), size >= 0 else { return nil }
            entries.append(Entry(key: key, size: size, etag: first(c, "ETag") ?? "", lastModified: first(c, "LastModified") ?? ""))
        }
        let truncated = first(xml, "IsTruncated") == "true"
        return ListPage(entries: entries, isTruncated: truncated)
    }

    /// `<Error><Code>…</Code><Message>…</Message></Error>`; nil if the body is not one.
    static func error(_ bytes: [UInt8]) -> (code: String, message: String)? {
        guard !bytes.isEmpty else { return nil }
        let xml = String(decoding: bytes.prefix(64 << 10), as: UTF8.self)[...]
        guard let err = elements(xml, "Error").first, let code = first(err, "Code") else { return nil }
        return (String(code.prefix(100)), String((first(err, "Message") ?? "").prefix(300)))
    }

    /// The UploadId of an InitiateMultipartUploadResult.
    static func uploadID(_ bytes: [UInt8]) -> String? {
        let xml = String(decoding: bytes, as: UTF8.self)[...]
        guard let id = first(xml, "UploadId"), !id.isEmpty, id.count <= 1024 else { return nil }
        return id
    }

    /// Escapes text for an XML element (the CompleteMultipartUpload body's ETags).
    static func escape(_ s: String) -> String {
        var out = ""
        for ch in s {
            switch ch {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            default: out.append(ch)
            }
        }
        return out
    }

    /// Last-Modified as ISO 8601 (2026-11-26T11:48:15.000Z) → seconds since 1970.
    static func parseISO8601(_ s: String) -> Double? {
        let u = Array(s.utf8)
        guard u.count >= 20, u[4] == 0x2d, u[7] == 0x2d, u[10] == 0x54, u[13] == 0x3a, u[16] == 0x3a else { return nil }
        func num(_ r: Range<Int>) -> Int? {
            var v = 0
            for i in r { guard u[i] >= 0x30 && u[i] <= 0x39 else { return nil }; v = v * 10 + Int(u[i] - 0x30) }
            return v
        }
        guard let y = num(0..<4), let mo = num(5..<7), let d = num(8..<10), let h = num(11..<13), let mi = num(14..<16), let sec = num(17..<19),
              (1...12).contains(mo), (1...31).contains(d), h < 24, mi < 60, sec < 61 else { return nil }
        // Days from civil (Howard Hinnant's algorithm).
        let yy = mo <= 2 ? y - 1 : y
        let era = (yy >= 0 ? yy : yy - 399) / 400
        let yoe = yy - era * 400
        let doy = (153 * (mo + (mo > 2 ? -3 : 9)) + 2) / 5 + d - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        let days = era * 146097 + doe - 719468
        return Double(days * 86400 + h * 3600 + mi * 60 + sec)
    }
}
