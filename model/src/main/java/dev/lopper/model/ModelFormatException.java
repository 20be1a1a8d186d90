package dev.lopper.model;

import java.nio.file.Path;

/**
 * Bad input: a model file, config field, tensor or text that is not what Lopper expects. The message always
 * names the file (and field or tensor), what was found and what was expected, in one line, so the CLI can print
 * it as is.
 */
public class ModelFormatException extends RuntimeException {
    public ModelFormatException(String message) {
        super(oneLine(message));
    }

    public ModelFormatException(String message, Throwable cause) {
        super(oneLine(message), cause);
    }

    /** Line breaks (from a tensor name or a library's message) escaped, so the message stays one line. */
    static String oneLine(String message) {
        return message == null ? null : message.replace("\r", "\\r").replace("\n", "\\n");
    }

    /** "FILE: field 'F': found X, expected Y". */
    public static ModelFormatException field(Path file, String field, Object found, String expected) {
        return new ModelFormatException(file + ": field '" + field + "': found " + found + ", expected " + expected);
    }

    public static ModelFormatException file(Path file, String problem) {
        return new ModelFormatException(file + ": " + problem);
    }
}
