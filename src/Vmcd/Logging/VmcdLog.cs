using Serilog;
using Serilog.Core;
using Serilog.Events;
using Serilog.Formatting.Compact;
using Tmds.Linux;
using static Tmds.Linux.LibC;

namespace Vmcd.Logging;

public enum LogFormat { Text, Json }

/// <summary>
/// vmcd's one logger: everything on stderr (stdout stays free for --print-capabilities). Text by
/// default; compact JSON (CLEF) for log collectors. When stderr is the journal (systemd sets
/// JOURNAL_STREAM to its device and inode), text lines drop the timestamp, which journald adds
/// itself, and start with a syslog priority prefix ("&lt;3&gt;") so journald records each line's level.
/// </summary>
public static class VmcdLog
{
    public static Logger Create(LogEventLevel level, LogFormat format)
    {
        var config = new LoggerConfiguration().MinimumLevel.Is(level);
        if (format == LogFormat.Json)
            return config.WriteTo.Console(new CompactJsonFormatter(), standardErrorFromLevel: LogEventLevel.Verbose).CreateLogger();
        if (StderrIsJournal())
            return config.Enrich.With<SyslogPriorityEnricher>()
                .WriteTo.Console(outputTemplate: "{SyslogPriority:l}{Level:u3} {Connection:l} {Message:lj}{NewLine}{Exception}",
                    standardErrorFromLevel: LogEventLevel.Verbose)
                .CreateLogger();
        return config
            .WriteTo.Console(outputTemplate: "{Timestamp:HH:mm:ss.fff} {Level:u3} {Connection:l} {Message:lj}{NewLine}{Exception}",
                standardErrorFromLevel: LogEventLevel.Verbose)
            .CreateLogger();
    }

    /// <summary>True when JOURNAL_STREAM names the device and inode stderr is connected to (sd_journal_stream's contract).</summary>
    internal static unsafe bool StderrIsJournal()
    {
        string? stream = Environment.GetEnvironmentVariable("JOURNAL_STREAM");
        if (stream == null) return false;
        int colon = stream.IndexOf(':');
        if (colon < 0 || !ulong.TryParse(stream.AsSpan(0, colon), out ulong dev) || !ulong.TryParse(stream.AsSpan(colon + 1), out ulong ino))
            return false;
        stat st;
        if (fstat(STDERR_FILENO, &st) != 0) return false;
        return (ulong)st.st_dev == dev && (ulong)st.st_ino == ino;
    }

    /// <summary>Adds SyslogPriority: "&lt;N&gt;" with N the syslog severity of the event's level.</summary>
    private sealed class SyslogPriorityEnricher : ILogEventEnricher
    {
        private static readonly LogEventProperty[] Priorities =
        [
            new("SyslogPriority", new ScalarValue("<7>")),   // Verbose: debug
            new("SyslogPriority", new ScalarValue("<7>")),   // Debug
            new("SyslogPriority", new ScalarValue("<6>")),   // Information: info
            new("SyslogPriority", new ScalarValue("<4>")),   // Warning: warning
            new("SyslogPriority", new ScalarValue("<3>")),   // Error: err
            new("SyslogPriority", new ScalarValue("<2>")),   // Fatal: crit
        ];

        public void Enrich(LogEvent logEvent, ILogEventPropertyFactory propertyFactory) =>
            logEvent.AddPropertyIfAbsent(Priorities[(int)logEvent.Level]);
    }
}
