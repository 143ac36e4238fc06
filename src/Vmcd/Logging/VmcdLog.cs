using Serilog;
using Serilog.Core;
using Serilog.Events;
using Serilog.Formatting;
using Serilog.Formatting.Compact;
using Tmds.Linux;
using static Tmds.Linux.LibC;

namespace Vmcd.Logging;

public enum LogFormat { Text, Json }

/// <summary>
/// vmcd's one logger: everything on stderr (stdout stays free for --print-capabilities). Text by
/// default; compact JSON (CLEF) for log collectors. When stderr is the journal (systemd sets
/// JOURNAL_STREAM to its device and inode), text lines drop the timestamp, which journald adds
/// itself; text and JSON lines start with a syslog priority prefix ("&lt;3&gt;") so journald records
/// each line's level.
/// </summary>
public static class VmcdLog
{
    public static Logger Create(LogEventLevel level, LogFormat format)
    {
        var config = new LoggerConfiguration().MinimumLevel.Is(level).Enrich.FromLogContext();
        bool journal = StderrIsJournal();
        if (format == LogFormat.Json)
        {
            ITextFormatter json = new CompactJsonFormatter();
            return config.WriteTo.Console(journal ? new SyslogPriorityPrefix(json) : json, standardErrorFromLevel: LogEventLevel.Verbose)
                .CreateLogger();
        }
        if (journal)
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

    /// <summary>"&lt;N&gt;" with N the syslog severity of each Serilog level, Verbose..Fatal: debug, debug, info, warning, err, crit.</summary>
    private static readonly string[] PriorityPrefixes = ["<7>", "<7>", "<6>", "<4>", "<3>", "<2>"];

    /// <summary>Adds SyslogPriority, the event's priority prefix, for the text template.</summary>
    private sealed class SyslogPriorityEnricher : ILogEventEnricher
    {
        private static readonly LogEventProperty[] Properties =
            PriorityPrefixes.Select(p => new LogEventProperty("SyslogPriority", new ScalarValue(p))).ToArray();

        public void Enrich(LogEvent logEvent, ILogEventPropertyFactory propertyFactory) =>
            logEvent.AddPropertyIfAbsent(Properties[(int)logEvent.Level]);
    }

    /// <summary>Writes the priority prefix before each event of another formatter (journald strips it and records the priority).</summary>
    private sealed class SyslogPriorityPrefix(ITextFormatter inner) : ITextFormatter
    {
        public void Format(LogEvent logEvent, TextWriter output)
        {
            output.Write(PriorityPrefixes[(int)logEvent.Level]);
            inner.Format(logEvent, output);
        }
    }
}
