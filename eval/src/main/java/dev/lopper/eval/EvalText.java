package dev.lopper.eval;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.lopper.model.ModelFormatException;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.stream.Stream;

/**
 * The text to measure perplexity on: a UTF-8 text file (one document), a JSONL file (one document per line, in a
 * string field) or a directory of such files (sorted by path); documents joined as the preset says.
 *
 * <pre>{@code
 * String text = EvalText.read(Path.of("fixtures/text/kjv-test.txt"), "text", "\n\n");
 * }</pre>
 */
public final class EvalText {
    private static final ObjectMapper JSON = new ObjectMapper();

    private EvalText() {
    }

    public static String read(Path source, String field, String joiner) {
        if (!Files.exists(source)) {
            throw ModelFormatException.file(source, "not found; expected a text file, a .jsonl file or a directory of them");
        }
        List<String> docs = new ArrayList<>();
        try {
            if (Files.isDirectory(source)) {
                List<Path> files;
                try (Stream<Path> s = Files.walk(source)) {
                    files = s.filter(Files::isRegularFile).filter(p -> !p.getFileName().toString().startsWith(".")).sorted().toList();
                }
                for (Path f : files) {
                    readFile(f, field, docs);
                }
            } else {
                readFile(source, field, docs);
            }
        } catch (IOException e) {
            throw ModelFormatException.file(source, "cannot read: " + e.getMessage());
        }
        String text = String.join(joiner, docs);
        if (text.isBlank()) {
            throw ModelFormatException.file(source, "is empty; expected text to evaluate");
        }
        return text;
    }

    private static void readFile(Path f, String field, List<String> docs) throws IOException {
        String name = f.getFileName().toString().toLowerCase(Locale.ROOT);
        if (!name.endsWith(".jsonl") && !name.endsWith(".ndjson")) {
            docs.add(Files.readString(f, StandardCharsets.UTF_8));
            return;
        }
        int n = 0;
        for (String line : Files.readAllLines(f, StandardCharsets.UTF_8)) {
            n++;
            if (line.isBlank()) {
                continue;
            }
            JsonNode node;
            try {
                node = JSON.readTree(line);
            } catch (IOException e) {
                throw ModelFormatException.file(f, "line " + n + " is not valid JSON");
            }
            JsonNode t = node == null ? null : node.get(field);
            if (t == null || !t.isTextual()) {
                throw ModelFormatException.file(f, "line " + n + " has no string field '" + field + "'");
            }
            docs.add(t.textValue());
        }
    }

    /** "sha256:" + hex of a file's bytes, or of a directory's files (sorted by path, names included). */
    public static String hash(Path source) {
        try {
            java.security.MessageDigest md = java.security.MessageDigest.getInstance("SHA-256");
            List<Path> files;
            if (Files.isDirectory(source)) {
                try (Stream<Path> s = Files.walk(source)) {
                    files = s.filter(Files::isRegularFile).sorted().toList();
                }
            } else {
                files = List.of(source);
            }
            byte[] buf = new byte[1 << 16];
            for (Path f : files) {
                md.update(source.relativize(f).toString().getBytes(StandardCharsets.UTF_8));
                try (var in = Files.newInputStream(f)) {
                    int r;
                    while ((r = in.read(buf)) > 0) {
                        md.update(buf, 0, r);
                    }
                }
            }
            return "sha256:" + java.util.HexFormat.of().formatHex(md.digest());
        } catch (IOException e) {
            throw ModelFormatException.file(source, "cannot read: " + e.getMessage());
        } catch (java.security.NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }
}
