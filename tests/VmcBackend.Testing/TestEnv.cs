namespace VmcBackend.Testing;

/// <summary>Knobs tests read from the environment (fuzz seeds and counts), with defaults.</summary>
public static class TestEnv
{
    /// <summary>The integer in environment variable <paramref name="name"/>, or <paramref name="fallback"/>.</summary>
    public static int Int(string name, int fallback)
        => int.TryParse(Environment.GetEnvironmentVariable(name), out int v) ? v : fallback;
}
