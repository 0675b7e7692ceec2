// `cce4 plane`: the Privacy Plane's client subcommands (PlaneClientCommands.swift). The plane
// branch's `serve` joins them here: subcommands: [Serve.self] + PlaneClientCommands.all.
import ArgumentParser

struct PlaneCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plane", abstract: "Talk to a Privacy Plane: sign in, approve it as your operator, list versions.",
        subcommands: PlaneClientCommands.all)
}
