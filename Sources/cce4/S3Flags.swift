import ArgumentParser
import ObjectStore

/// How to reach an s3:// store; unset values come from the AWS_* variables and
/// ~/.aws/credentials (README: "s3:// stores").
struct S3Flags: ParsableArguments {
    @Option(name: .customLong("s3-endpoint"), help: ArgumentHelp("S3 endpoint, as in https://minio.example:9000 (default: AWS_ENDPOINT_URL, else AWS for the region).", valueName: "url"))
    var endpoint: String?

    @Option(name: .customLong("s3-region"), help: ArgumentHelp("S3 region (default: AWS_REGION, else us-east-1).", valueName: "name"))
    var region: String?

    @Option(name: .customLong("s3-profile"), help: ArgumentHelp("Profile in the shared credentials file (default: AWS_PROFILE, else default).", valueName: "name"))
    var profile: String?

    @Option(name: .customLong("s3-credentials-file"), help: ArgumentHelp("Shared credentials file (default: AWS_SHARED_CREDENTIALS_FILE, else ~/.aws/credentials).", valueName: "path"))
    var credentialsFile: String?

    @Option(name: .customLong("s3-addressing"), help: ArgumentHelp("path or virtual (default: virtual on AWS, path with --s3-endpoint).", valueName: "style"))
    var addressing: String?

    @Option(name: .customLong("s3-ca-file"), help: ArgumentHelp("PEM file of CA certificates to trust (default: the system's).", valueName: "path"))
    var caFile: String?

    func validate() throws {
        if let a = addressing, S3Addressing(rawValue: a) == nil { throw ValidationError("--s3-addressing must be path or virtual") }
    }

    var options: S3Options {
        var o = S3Options()
        o.endpoint = endpoint; o.region = region; o.profile = profile; o.credentialsFile = credentialsFile
        o.addressing = addressing.flatMap(S3Addressing.init(rawValue:)); o.caFile = caFile
        return o
    }
}
