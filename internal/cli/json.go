package cli

import "encoding/json"

// printJSONValue prints v as indented JSON.
func printJSONValue(g *Globals, v any) error {
	enc := json.NewEncoder(g.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
