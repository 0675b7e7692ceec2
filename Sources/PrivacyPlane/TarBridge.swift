// The tar packer (Dataset's `Packer.pack(tar:)`) fed from the request body through `BodyPipe`.
import Dataset

extension BodyPipe: ByteSource {}

enum TarBridge {
    /// Packs the streamed archive; a malformed or hostile archive is the client's error (422).
    static func pack(_ packer: Packer, source: BodyPipe, config: PlaneConfig) throws -> PackResult {
        var limits = TarLimits()
        limits.maxEntries = config.maxEntries
        limits.maxFileBytes = config.maxFileBytes
        // The body's size is limited as it streams (413); maxTotalBytes stays the reader's default.
        do { return try packer.pack(tar: source, limits: limits) } catch let e as TarError {
            throw PlaneError.unprocessable(e.description)
        }
    }
}
