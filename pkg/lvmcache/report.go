package lvmcache

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// Report is an lvm2 JSON report: for each kind of row ("lv", "pv", "vg",
// "seg"), the rows in lvm2's order, each a map from field name to the value
// as lvm2 printed it. lvm2 prints every value as a string, and an empty
// string where a field does not apply.
type Report map[string][]Row

// Row is one row of a report.
type Row map[string]string

// ParseReport parses the output of an lvm2 command run with
// --reportformat json. Only the "report" key is read: lvm2 2.03 may add a
// "log" key (report_command_log) that is ignored.
func ParseReport(data []byte) (Report, error) {
	var doc struct {
		Report []map[string][]map[string]json.RawMessage `json:"report"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("lvm2 report: not the JSON of --reportformat json: %w", err)
	}
	if doc.Report == nil {
		return nil, fmt.Errorf("lvm2 report: no \"report\" key in the JSON")
	}
	report := Report{}
	for _, section := range doc.Report {
		for kind, rows := range section {
			if _, ok := report[kind]; !ok {
				report[kind] = []Row{}
			}
			for _, raw := range rows {
				row := make(Row, len(raw))
				for field, value := range raw {
					var s string
					if err := json.Unmarshal(value, &s); err != nil {
						// Not written by lvm2 as of 2.03, but a number is a
						// value all the same.
						var n json.Number
						if err2 := json.Unmarshal(value, &n); err2 != nil {
							return nil, fmt.Errorf("lvm2 report: %s field %q: expected a string, got %s", kind, field, truncate(string(value), 40))
						}
						s = n.String()
					}
					row[field] = s
				}
				report[kind] = append(report[kind], row)
			}
		}
	}
	return report, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// Int returns field as an integer. An empty value (a field that does not
// apply, or an inactive LV's kernel counters) is 0.
func (r Row) Int(field string) (int64, error) {
	v := strings.TrimSpace(r[field])
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		// --units b can still print a fraction on odd lvm2 builds: "1024.00".
		if f, ferr := strconv.ParseFloat(v, 64); ferr == nil && f >= 0 && f < 1<<62 {
			return int64(f), nil
		}
		return 0, fmt.Errorf("lvm2 report: field %s = %q: expected an integer", field, v)
	}
	return n, nil
}

// Devices splits a devices field ("/dev/sdb(0),/dev/sdc(12)") into device
// names without the starting extents.
func Devices(field string) []string {
	var devices []string
	for _, part := range strings.Split(field, ",") {
		part = strings.TrimSpace(part)
		if i := strings.LastIndexByte(part, '('); i > 0 && strings.HasSuffix(part, ")") {
			part = part[:i]
		}
		if part != "" {
			devices = append(devices, part)
		}
	}
	return devices
}

// hiddenName strips the brackets lvm2 puts around hidden LV names.
func hiddenName(name string) string {
	return strings.TrimSuffix(strings.TrimPrefix(name, "["), "]")
}
