// The tar packer (Dataset's `Packer.pack(tar:)`, from the tar branch) fed from the request body.
import Dataset

enum TarBridge {
    static func pack(_ packer: Packer, source: BodyPipe, config: PlaneConfig) throws -> PackResult {
        throw PlaneError.unavailable("uploads need the tar packer, which is not merged yet")
    }
}
