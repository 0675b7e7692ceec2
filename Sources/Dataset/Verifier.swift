// Walks a whole dataset version and checks every object.
import Envelope
import ObjectStore

/// One problem found by `Verifier`.
public struct VerifyProblem: Sendable, CustomStringConvertible {
    /// The store key of the bad object.
    public let object: String
    public let detail: String
    /// The path inside the dataset, only when the caller asked to see names.
    public let path: String?
    public var description: String {
        "BAD \(object): \(detail)" + (path.map { " [\($0)]" } ?? "")
    }
}

/// The outcome of a full verification.
public struct VerifyReport: Sendable {
    public var directories = 0
    public var files = 0
    public var symlinks = 0
    public var plaintextBytes: Int64 = 0
    public var ciphertextBytes: Int64 = 0
    public var problems: [VerifyProblem] = []
    public var ok: Bool { problems.isEmpty }
}

/// Checks a dataset version end to end: every directory object against its hash (the
/// root against the given root hash), every directory body's encoding, every file
/// object's size and every segment's tag. Keeps going after a problem, so one run lists
/// every bad object. Never prints a decrypted name unless `showNames` is set.
public struct Verifier {
    public let reader: DatasetReader
    public let showNames: Bool

    public init(reader: DatasetReader, showNames: Bool = false) {
        self.reader = reader
        self.showNames = showNames
    }

    public func run(progress: ((VerifyReport) -> Void)? = nil) -> VerifyReport {
        var report = VerifyReport()
        // nil is the root (checked against the root hash); a subdirectory comes with its parent's entry.
        var stack: [(ref: DirectoryRef?, path: String)] = [(nil, "/")]
        while let (ref, path) = stack.popLast() {
            let dirKey = reader.objectKey(ofDirectory: ref?.hash ?? reader.root)
            let entries: [DirectoryEntry]
            do {
                let listing = try ref.map { try reader.directory($0) } ?? reader.rootDirectory()
                entries = try listing.validateAll()
            } catch {
                report.problems.append(problem(error, object: dirKey, path: path))
                continue
            }
            report.directories += 1
            for e in entries {
                let childPath = path == "/" ? "/" + display(e.name) : path + "/" + display(e.name)
                switch e.target {
                case .directory(let d):
                    stack.append((d, childPath))
                case .symlink:
                    report.symlinks += 1
                case .file(let f):
                    report.files += 1
                    let firstKey = (try? reader.layout.storeKey(f.parts[0].key).rawValue) ?? f.objectKey
                    do {
                        let file = try reader.open(f)
                        try file.verifyAll()
                        report.plaintextBytes += f.size
                        report.ciphertextBytes += f.ciphertextSize
                    } catch {
                        report.problems.append(problem(error, object: firstKey, path: childPath))
                    }
                }
                progress?(report)
            }
        }
        return report
    }

    private func display(_ name: [UInt8]) -> String { String(decoding: name, as: UTF8.self) }

    private func problem(_ error: any Error, object: String, path: String) -> VerifyProblem {
        let detail: String
        let obj: String
        switch error {
        case DatasetError.integrity(let o, let d): obj = o; detail = d
        case DatasetError.store(let e): obj = e.key ?? object; detail = "\(e.code.rawValue): \(e.detail)"
        default: obj = object; detail = "\(error)"
        }
        return VerifyProblem(object: obj, detail: detail, path: showNames ? path : nil)
    }
}
