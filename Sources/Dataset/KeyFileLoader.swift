// Reading the development key file from disk (the format is Envelope's InsecureKeyFile).
import Envelope
#if canImport(Glibc)
import Glibc
#endif

/// Why a key file could not be used. Messages name the path and the fix, never content.
public struct KeyFileError: Error, CustomStringConvertible, Sendable {
    public enum Kind: Sendable { case missing, unreadable, permissions, malformed }
    public let kind: Kind
    public let description: String
}

public enum KeyFiles {
    /// Loads a key file into locked memory: a regular file (not a symlink) that group and
    /// others cannot access, holding one `cce4-insecure-key-v1` line. The read buffer is wiped.
    public static func load(_ path: String) throws(KeyFileError) -> SecureBytes {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        guard fd >= 0 else {
            let e = errno
            if e == ENOENT {
                throw KeyFileError(kind: .missing, description: "key file \(path) does not exist; make one with 'cce4 key generate --insecure-key-file \(path)'")
            }
            throw KeyFileError(kind: e == EACCES ? .permissions : .unreadable, description: "cannot open key file \(path): \(String(cString: strerror(e)))")
        }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0, st.st_mode & S_IFMT == S_IFREG else {
            throw KeyFileError(kind: .unreadable, description: "key file \(path) is not a regular file")
        }
        guard st.st_mode & 0o077 == 0 else {
            throw KeyFileError(kind: .permissions, description: "key file \(path) is accessible by group or others (mode \(String(st.st_mode & 0o777, radix: 8))); run 'chmod 600 \(path)'")
        }
        var buf = [UInt8](repeating: 0, count: 256)
        defer { secureWipe(&buf) }
        let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress!, $0.count) }
        guard n >= 0 else { throw KeyFileError(kind: .unreadable, description: "cannot read key file \(path): \(String(cString: strerror(errno)))") }
        do {
            return try buf.withUnsafeBytes { try InsecureKeyFile.parse(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
        } catch {
            throw KeyFileError(kind: .malformed, description: "key file \(path): \(error)")
        }
    }
}
