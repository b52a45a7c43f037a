-- Pandoc's typst writer escapes a heading or list marker that starts a paragraph, but not one that starts
-- a plain block (a table cell, a tight list item): a cell holding "= x", "- x", "+ x", "/ x: y" or "1. x"
-- would become a heading (listed in the outline), a list or a term list in the PDF. This filter escapes
-- such a marker, so the cell shows the text it holds (the HTML is not touched).

if FORMAT ~= "typst" then
  return {}
end

local function is_marker(text)
  return text:match("^=+$") ~= nil or text == "-" or text == "+" or text == "/" or text:match("^%d+%.$") ~= nil
end

local function is_break(inline)
  return inline ~= nil and (inline.t == "Space" or inline.t == "SoftBreak" or inline.t == "LineBreak")
end

function Plain(block)
  local first = block.content[1]
  if first ~= nil and first.t == "Str" and is_marker(first.text) and is_break(block.content[2]) then
    block.content[1] = pandoc.RawInline("typst", "\\" .. first.text)
    return block
  end
  return nil
end
