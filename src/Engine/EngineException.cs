namespace Engine;

/// <summary>A user's mistake or bad input: the message is one line that names what and where.
/// The CLI prints it without a stack trace and exits with code 2.</summary>
public class EngineException(string message, Exception? inner = null) : Exception(message, inner);
