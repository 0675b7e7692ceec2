// Logs to stderr in the foreground and to syslog once the mount runs in the background.
internal import CFuse
import Foundation
import Logging
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Where log lines go: standard error until `switchToSyslog()`, syslog (the journal) after.
public enum LogDestination {
    static let syslogOn = Atomic<Bool>(false)

    /// Opens syslog with `ident` and routes every later line there.
    public static func switchToSyslog(ident: String) {
        openlog(strdup(ident), LOG_PID | LOG_NDELAY, LOG_DAEMON)
        syslogOn.store(true, ordering: .releasing)
    }
}

/// Writes to fd 2 and ignores failures: a closed or broken stderr (EPIPE, with SIGPIPE ignored
/// by libfuse) must never bring the filesystem down, as FileHandle.write's trap would.
public func writeStandardError(_ text: String) {
    var bytes = Array(text.utf8)
    var done = 0
    while done < bytes.count {
        let n = bytes.withUnsafeMutableBytes { write(2, $0.baseAddress! + done, $0.count - done) }
        if n < 0 && errno == EINTR { continue }
        if n <= 0 { return }
        done += n
    }
}

/// A swift-log handler for cce4fs: "level label: message key=value" lines.
public struct FSLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level
    let label: String

    public init(label: String, level: Logger.Level) { self.label = label; self.logLevel = level }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var line = "\(event.level) \(label): \(event.message)"
        let all = metadata.merging(event.metadata ?? [:]) { $1 }
        for (k, v) in all.sorted(by: { $0.key < $1.key }) { line += " \(k)=\(v)" }
        if LogDestination.syslogOn.load(ordering: .acquiring) {
            let prio: Int32
            switch event.level {
            case .trace, .debug: prio = LOG_DEBUG
            case .info: prio = LOG_INFO
            case .notice: prio = LOG_NOTICE
            case .warning: prio = LOG_WARNING
            case .error: prio = LOG_ERR
            case .critical: prio = LOG_CRIT
            }
            cce4_syslog(prio, line)
        } else {
            writeStandardError(line + "\n")
        }
    }
}
