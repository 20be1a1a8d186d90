package dev.lopper.cli;

import picocli.CommandLine;
import picocli.CommandLine.Help;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Model.OptionSpec;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * A command's {@code --help} with its options in titled sections (what each option configures) instead of one
 * alphabetical list. The sections name options by their longest name; an option no section names is listed last
 * under "Other options" (a test keeps that list empty for {@code lopper prune}).
 */
final class HelpSections {
    private HelpSections() {
    }

    /** Shows {@code cl}'s options in {@code sections} (heading to option names, in order). */
    static void install(CommandLine cl, Map<String, List<String>> sections) {
        cl.getHelpSectionMap().put(CommandLine.Model.UsageMessageSpec.SECTION_KEY_OPTION_LIST, help -> render(help, sections));
    }

    /** The visible options of {@code spec} that no section names (their longest names). */
    static List<String> unsectioned(CommandSpec spec, Map<String, List<String>> sections) {
        Set<String> named = new LinkedHashSet<>();
        sections.values().forEach(named::addAll);
        List<String> rest = new ArrayList<>();
        for (OptionSpec o : spec.options()) {
            if (!o.hidden() && !named.contains(o.longestName())) {
                rest.add(o.longestName());
            }
        }
        return rest;
    }

    private static String render(Help help, Map<String, List<String>> sections) {
        CommandSpec spec = help.commandSpec();
        StringBuilder sb = new StringBuilder();
        Map<String, List<String>> all = new LinkedHashMap<>(sections);
        List<String> rest = unsectioned(spec, sections);
        if (!rest.isEmpty()) {
            all.put("Other options", rest);
        }
        for (Map.Entry<String, List<String>> e : all.entrySet()) {
            List<OptionSpec> opts = new ArrayList<>();
            for (String name : e.getValue()) {
                OptionSpec o = spec.findOption(name);
                if (o != null && !o.hidden()) {
                    opts.add(o);
                }
            }
            if (opts.isEmpty()) {
                continue;
            }
            sb.append(System.lineSeparator()).append(e.getKey()).append(':').append(System.lineSeparator());
            sb.append(help.optionListExcludingGroups(opts, help.createDefaultLayout(), null, help.parameterLabelRenderer()));
        }
        return sb.toString();
    }
}
